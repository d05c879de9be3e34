package controller

// A protocol extends the controller the way it extends the proxy: its
// control package (protocols/<name>/control, next to the codec) registers a
// TranslatorInfo from its init, and a controller binary serves the
// protocols whose control packages it imports (protocols/standard/control
// for the built-in ones). The generic pipeline asks the registry, never a
// protocol by name, for:
//
//   - the protocol name ports use, and its codec (protocol.go);
//   - the kinds to read: the folder source's decoders, the Kubernetes
//     source's informers, and the Secrets those objects name;
//   - one Part per push (Translator.Build), kept in the Index; the
//     statuses of every Part are written by one status writer
//     (Index.ProtocolStatuses, KubeSource.ProtocolObject);
//   - per listener of a port of the protocol's codec, through optional
//     interfaces of the Part: codec options (CodecOptioner), routes
//     (Router), cluster patches (ClusterPatcher) and authorization
//     policies of the protocol's own kinds (Authorizer).

import (
	"fmt"
	"sort"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// TranslatorInfo registers a protocol's control-plane part.
type TranslatorInfo struct {
	// Protocol is the name ports use: port names "<protocol>",
	// "<protocol>-*" and "tcp-<protocol>-*", and appProtocol "<protocol>",
	// pick it (ApplicationProtocols add other names for a codec).
	Protocol string
	// Codec is the proxy codec of the protocol; Protocol when empty. The
	// translator's Part applies to every port of this codec, whichever
	// protocol name chose it.
	Codec string
	// Kinds are the API kinds the translator reads.
	Kinds []Kind
	// Credentials, when set, says which Secrets the translator may name.
	Credentials *Credentials
	// SecretRefs, when set, lists the Secrets the inputs' objects name;
	// the Kubernetes source reads them by name (it does not list or watch
	// Secrets) into Inputs.Secrets.
	SecretRefs func(in *Inputs) []types.NamespacedName
	// New makes the translator of one Builder; it must have no side
	// effects.
	New func() Translator
}

// Credentials says which Secrets a translator may use.
type Credentials struct {
	// Label marks them: in Kubernetes mode a named Secret is used only
	// with Label set to "true" (or when of type kubernetes.io/tls, a
	// Gateway's credential), so naming a Secret in an object cannot copy
	// an unrelated one (a TLS key, another app's password) into proxies'
	// config.
	Label string
	// ChartValue is the Helm chart value that grants the controller get on
	// them, named in the log when one may not be read.
	ChartValue string
}

// Kind is an API kind a translator reads.
type Kind struct {
	// Kind is the object kind ("MetaRouter"-like), unique among the
	// registered kinds; its objects' statuses are keyed
	// "<Kind>/<namespace>/<name>".
	Kind string
	// GVR is the resource the Kubernetes source watches. Its group is the
	// one the folder source reads the kind from.
	GVR schema.GroupVersionResource
	// AliasGroups are further groups the folder source reads it from
	// (Aeraki's, for its users' files).
	AliasGroups []string
	// New returns an empty object of the kind: a pointer to its Go type,
	// which objects of the kind are decoded into.
	New func() metav1.Object
	// Status reads an object's status, for the status writer; nil when
	// the controller writes none for the kind.
	Status func(metav1.Object) v1alpha1.MetaRouterStatus
}

// groups lists the groups the folder source reads k from.
func (k Kind) groups() []string {
	return append([]string{k.GVR.Group}, k.AliasGroups...)
}

// Translator is a protocol's translator for one Builder. It may remember
// what it needs across builds (the last valid version of each object: see
// InForce); the Builder never calls it concurrently.
type Translator interface {
	// Build translates the protocol's objects for one push. ix has its
	// services, DestinationRules and MetaRouters indexed; Build reads it
	// and must not change it. Every proxy's generation reads the Part,
	// concurrently: it must not change once returned.
	Build(ix *Index, in *Inputs) Part
}

// Part is a translator's share of one Index.
type Part interface {
	// Statuses are the statuses the protocol's objects should have, by
	// "<Kind>/<namespace>/<name>".
	Statuses() map[string]RouterStatus
}

// CodecOptioner is a Part that sets the codec options of the listeners of
// its codec's ports.
type CodecOptioner interface {
	// CodecOptions returns the options of the listener of svc's port.
	// port.Protocol.CodecOptions, which it must not modify, are what the
	// port's protocol gives (an ApplicationProtocol's options).
	CodecOptions(g *Generation, svc *Service, port Port) map[string]string
}

// Router is a Part that routes its codec's ports.
type Router interface {
	// Routes returns the routes of svc's port; nil leaves the port to its
	// MetaRouter, else to one route to the service itself.
	Routes(g *Generation, svc *Service, port Port) []*configv1alpha1.Route
}

// ClusterPatcher is a Part that adjusts the clusters of its codec's
// service ports (and those of hosts without a service).
type ClusterPatcher interface {
	// PatchCluster adjusts the cluster of host's port, and its endpoints,
	// after the DestinationRule's settings.
	PatchCluster(ix *Index, c *clusterv3.Cluster, cla *endpointv3.ClusterLoadAssignment, host string, port uint32)
}

// Authorizer is a Part with authorization policies of the protocol's own
// kinds; they come after Istio's and MetaAuthorizationPolicies.
type Authorizer interface {
	// Authorization lists the policies in force, in the order they apply.
	Authorization() []CodecPolicy
}

// CodecPolicy is a translated authorization policy that covers the ports
// of the translator's codec of the services of Namespace (of every
// namespace, for a policy in the root namespace).
type CodecPolicy struct {
	Namespace string
	Policy    *configv1alpha1.AuthorizationPolicy
}

var (
	registryMu  sync.RWMutex
	translators = map[string]TranslatorInfo{}
)

// Register adds a protocol's translator; a protocol's control package calls
// it from init. It panics on an empty protocol, a nil New, or a protocol,
// codec or kind registered twice.
func Register(t TranslatorInfo) {
	if t.Protocol == "" {
		panic("controller: Register with an empty protocol")
	}
	if t.New == nil {
		panic(fmt.Sprintf("controller: Register %q with a nil New", t.Protocol))
	}
	if t.Codec == "" {
		t.Codec = t.Protocol
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	for _, have := range translators {
		if have.Protocol == t.Protocol || have.Codec == t.Codec {
			panic(fmt.Sprintf("controller: protocol %q (codec %q) registered twice", t.Protocol, t.Codec))
		}
		for _, k := range t.Kinds {
			if _, dup := have.kind(k.Kind); dup {
				panic(fmt.Sprintf("controller: kind %s of %q is %q's", k.Kind, t.Protocol, have.Protocol))
			}
		}
	}
	for _, k := range t.Kinds {
		if k.Kind == "" || k.New == nil || k.GVR.Resource == "" {
			panic(fmt.Sprintf("controller: a kind of %q lacks its name, New or GVR", t.Protocol))
		}
	}
	translators[t.Protocol] = t
}

// Translators lists the registered translators by protocol name.
func Translators() []TranslatorInfo {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]TranslatorInfo, 0, len(translators))
	for _, t := range translators {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Protocol < out[j].Protocol })
	return out
}

func (t TranslatorInfo) kind(name string) (Kind, bool) {
	for _, k := range t.Kinds {
		if k.Kind == name {
			return k, true
		}
	}
	return Kind{}, false
}

// registeredKinds lists every registered kind, by protocol then in order.
func registeredKinds() []Kind {
	var out []Kind
	for _, t := range Translators() {
		out = append(out, t.Kinds...)
	}
	return out
}

// kindNamed finds a registered kind by name.
func kindNamed(name string) (Kind, bool) {
	for _, k := range registeredKinds() {
		if k.Kind == name {
			return k, true
		}
	}
	return Kind{}, false
}

// kindOf finds the registered kind a folder's "group/Kind" names.
func kindOf(group, kind string) (Kind, bool) {
	k, ok := kindNamed(kind)
	if !ok {
		return Kind{}, false
	}
	for _, g := range k.groups() {
		if g == group {
			return k, true
		}
	}
	return Kind{}, false
}
