package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// TypeURLs are the resource types a Rosetta proxy subscribes to, in the
// order a proxy needs them. Secrets (SDS) come before the listeners that
// name them.
var TypeURLs = []string{config.ClusterType, config.EndpointType, config.SecretType, config.ListenerType, config.RouteType}

// snapshot is one scope's resources with a version per type. It
// implements go-control-plane's ResourceSnapshot with a map keyed by type
// URL, because its own Snapshot only knows Envoy's types and Rosetta's
// route resource is not one of them. It holds each resource encoded
// (see encoded), not as the message Generate built.
type snapshot struct {
	resources map[string]map[string]types.ResourceWithTTL
	// plain is resources without the TTL wrapper: go-control-plane asks
	// for it on every delta response and only reads it, so it is made
	// once, not per response.
	plain    map[string]map[string]types.Resource
	versions map[string]string
	// hashes is the per-resource version delta xDS compares: a hash of
	// the resource's deterministic encoding.
	hashes map[string]map[string]string
	// typeHash summarises each type, to tell whether a push changed it.
	typeHash map[string]string
}

var _ cachev3.ResourceSnapshot = (*snapshot)(nil)

// encoded is a resource held as its deterministic encoding, in the
// unknown fields of an empty message, which encode as those bytes
// unchanged. go-control-plane marshals each resource again for every
// response to every proxy; marshaling this one is a copy. It also keeps
// the scope's config at the size of its encoding, where the messages
// Generate built are several times larger. GetName names it in
// go-control-plane's logs.
type encoded struct {
	*emptypb.Empty
	name string
}

func newEncoded(name string, b []byte) encoded {
	m := &emptypb.Empty{}
	m.ProtoReflect().SetUnknown(b)
	return encoded{Empty: m, name: name}
}

// GetName is the resource's name.
func (e encoded) GetName() string { return e.name }

// bytes is the resource's encoding.
func (e encoded) bytes() []byte { return e.ProtoReflect().GetUnknown() }

// newSnapshot encodes resources, groups them by type and hashes them.
// Versions are set by the caller.
func newSnapshot(res *config.Resources) (*snapshot, error) {
	s := &snapshot{
		resources: map[string]map[string]types.ResourceWithTTL{},
		plain:     map[string]map[string]types.Resource{},
		versions:  map[string]string{},
		hashes:    map[string]map[string]string{},
		typeHash:  map[string]string{},
	}
	add := func(typeURL, name string, m proto.Message) error {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			return fmt.Errorf("xds: marshal %s %s: %w", typeURL, name, err)
		}
		if s.resources[typeURL] == nil {
			s.resources[typeURL] = map[string]types.ResourceWithTTL{}
			s.plain[typeURL] = map[string]types.Resource{}
			s.hashes[typeURL] = map[string]string{}
		}
		if _, dup := s.resources[typeURL][name]; dup {
			return fmt.Errorf("xds: two %s resources named %q", typeURL, name)
		}
		e := newEncoded(name, b)
		s.resources[typeURL][name] = types.ResourceWithTTL{Resource: e}
		s.plain[typeURL][name] = e
		// go-control-plane's own hash: delta xDS sends it as the
		// resource's version, and a reconnecting proxy's
		// initial_resource_versions match only that.
		s.hashes[typeURL][name] = cachev3.HashResource(b)
		return nil
	}
	for _, r := range res.Listeners {
		if err := add(config.ListenerType, r.GetName(), r); err != nil {
			return nil, err
		}
	}
	for _, r := range res.Clusters {
		if err := add(config.ClusterType, r.GetName(), r); err != nil {
			return nil, err
		}
	}
	for _, r := range res.Endpoints {
		if err := add(config.EndpointType, r.GetClusterName(), r); err != nil {
			return nil, err
		}
	}
	for _, r := range res.Routes {
		if err := add(config.RouteType, r.GetName(), r); err != nil {
			return nil, err
		}
	}
	for _, r := range res.Secrets {
		if err := add(config.SecretType, r.GetName(), r); err != nil {
			return nil, err
		}
	}
	for _, t := range TypeURLs {
		h := sha256.New()
		for _, name := range sortedKeys(s.hashes[t]) {
			fmt.Fprintf(h, "%s=%s;", name, s.hashes[t][name])
		}
		s.typeHash[t] = hex.EncodeToString(h.Sum(nil))
	}
	return s, nil
}

// withVersions returns a snapshot sharing s's resources (never modified
// after creation) with a versions map of its own.
func (s *snapshot) withVersions() *snapshot {
	return &snapshot{resources: s.resources, plain: s.plain, hashes: s.hashes, typeHash: s.typeHash, versions: map[string]string{}}
}

// sameResources reports whether s and o hold the same resources, by
// their hashes.
func (s *snapshot) sameResources(o *snapshot) bool {
	for _, t := range TypeURLs {
		if s.typeHash[t] != o.typeHash[t] {
			return false
		}
	}
	return true
}

func (s *snapshot) GetVersion(typeURL string) string { return s.versions[typeURL] }

func (s *snapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	return s.resources[typeURL]
}

// GetResources returns the shared map: its callers in go-control-plane
// only read it.
func (s *snapshot) GetResources(typeURL string) map[string]types.Resource {
	return s.plain[typeURL]
}

// ConstructVersionMap is a no-op: the hashes are computed up front.
func (s *snapshot) ConstructVersionMap() error { return nil }

func (s *snapshot) GetVersionMap(typeURL string) map[string]string { return s.hashes[typeURL] }

// count is how many resources of a type the snapshot holds.
func (s *snapshot) count(typeURL string) int { return len(s.resources[typeURL]) }

// decode turns the snapshot back into resources, each type in name
// order, for the config dump.
func (s *snapshot) decode() (*config.Resources, error) {
	res := &config.Resources{}
	var err error
	if res.Listeners, err = decodeAll[listenerv3.Listener](s, config.ListenerType); err != nil {
		return nil, err
	}
	if res.Clusters, err = decodeAll[clusterv3.Cluster](s, config.ClusterType); err != nil {
		return nil, err
	}
	if res.Endpoints, err = decodeAll[endpointv3.ClusterLoadAssignment](s, config.EndpointType); err != nil {
		return nil, err
	}
	if res.Routes, err = decodeAll[configv1alpha1.RouteConfiguration](s, config.RouteType); err != nil {
		return nil, err
	}
	if res.Secrets, err = decodeAll[tlsv3.Secret](s, config.SecretType); err != nil {
		return nil, err
	}
	return res, nil
}

// decodeAll decodes the resources of a type, in name order.
func decodeAll[T any, P interface {
	*T
	proto.Message
}](s *snapshot, typeURL string) ([]P, error) {
	names := make([]string, 0, len(s.resources[typeURL]))
	for name := range s.resources[typeURL] {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []P
	for _, name := range names {
		m := P(new(T))
		if err := proto.Unmarshal(s.resources[typeURL][name].Resource.(encoded).bytes(), m); err != nil {
			return nil, fmt.Errorf("xds: decode %s %s: %w", typeURL, name, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
