package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// TypeURLs are the resource types a Rosetta proxy subscribes to, in the
// order a proxy needs them. Secrets (SDS) come before the listeners that
// name them.
var TypeURLs = []string{config.ClusterType, config.EndpointType, config.SecretType, config.ListenerType, config.RouteType}

// snapshot is one proxy's resources with a version per type. It
// implements go-control-plane's ResourceSnapshot with a map keyed by type
// URL, because its own Snapshot only knows Envoy's types and Rosetta's
// route resource is not one of them.
type snapshot struct {
	resources map[string]map[string]types.ResourceWithTTL
	versions  map[string]string
	// hashes is the per-resource version delta xDS compares: a hash of
	// the resource's deterministic encoding.
	hashes map[string]map[string]string
	// typeHash summarises each type, to tell whether a push changed it.
	typeHash map[string]string
}

var _ cachev3.ResourceSnapshot = (*snapshot)(nil)

// newSnapshot groups resources by type and hashes them. Versions are set
// by the caller.
func newSnapshot(res *config.Resources) (*snapshot, error) {
	s := &snapshot{
		resources: map[string]map[string]types.ResourceWithTTL{},
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
			s.hashes[typeURL] = map[string]string{}
		}
		if _, dup := s.resources[typeURL][name]; dup {
			return fmt.Errorf("xds: two %s resources named %q", typeURL, name)
		}
		s.resources[typeURL][name] = types.ResourceWithTTL{Resource: m}
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
	return &snapshot{resources: s.resources, hashes: s.hashes, typeHash: s.typeHash, versions: map[string]string{}}
}

func (s *snapshot) GetVersion(typeURL string) string { return s.versions[typeURL] }

func (s *snapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	return s.resources[typeURL]
}

func (s *snapshot) GetResources(typeURL string) map[string]types.Resource {
	out := make(map[string]types.Resource, len(s.resources[typeURL]))
	for k, v := range s.resources[typeURL] {
		out[k] = v.Resource
	}
	return out
}

// ConstructVersionMap is a no-op: the hashes are computed up front.
func (s *snapshot) ConstructVersionMap() error { return nil }

func (s *snapshot) GetVersionMap(typeURL string) map[string]string { return s.hashes[typeURL] }

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
