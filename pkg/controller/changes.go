package controller

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// Scoped pushes: an edit costs what it changes. The Pipeline compares
// each read of the inputs with the one behind the last push and records
// what differs as Changes on the new Index: the hosts whose service,
// endpoints, DestinationRule or MetaRouter changed, among them those
// whose service itself changed (Shapes), the namespaces whose Sidecar
// changed, or All for a change whose reach is not worked out (policies,
// gateways, protocols, the translators' kinds, DNS answers). A proxy's
// generation records the hosts it read (Deps): wholly, or, for a lazy
// proxy's listener of a destination it has not learned, only what the
// listener reads. The xDS server generates a scope again only when
// Affects says the changes reach it, and keeps its last snapshot
// otherwise. A read with no change makes no push at all. This is Istio's
// model (a push request's updated configs, and a sidecar scope's config
// dependencies), on hosts instead of config keys.

// Changes are what differs between an Index and the one pushed before it.
type Changes struct {
	// All is set when a change may reach any proxy.
	All bool
	// Hosts are the hosts whose service, endpoints, DestinationRule or
	// MetaRouter changed (before or after the change).
	Hosts map[string]bool
	// Shapes are the hosts of Hosts whose Service or ServiceEntry
	// changed: what the listeners of a host read (its ports, their
	// protocols and names, addresses, exportTo, age, which service holds
	// a port number) can have changed only for these. An EndpointSlice,
	// Pod, DestinationRule or MetaRouter changes a host's routes,
	// clusters or endpoints only.
	Shapes map[string]bool
	// Namespaces are those whose proxies' Sidecar or Telemetry may have
	// changed.
	Namespaces map[string]bool
	// Objects counts the objects that changed.
	Objects int
	// kinds are the kinds of the objects that changed.
	kinds map[string]bool
}

// None reports whether nothing changed.
func (c *Changes) None() bool {
	return !c.All && len(c.Hosts) == 0 && len(c.Namespaces) == 0
}

// indexSeq numbers Indexes, so a scope generated from one Index can tell
// whether an Index's Changes are relative to it.
var indexSeq atomic.Uint64

// Seq is the Index's number, unique in the process and growing.
func (ix *Index) Seq() uint64 { return ix.seq }

// ChangedSince reports whether the Index's Changes are relative to the
// Index numbered seq, so that Affects can be asked about a scope
// generated from it.
func (ix *Index) ChangedSince(seq uint64) bool {
	return ix.changes != nil && ix.base == seq
}

// Deps are what one proxy's generation read of its Index: the hosts whose
// routes or clusters it made (hosts), those it read only for their
// listeners (listeners: every other host the proxy sees, which a lazy
// proxy routes to the fallback), and whether it depends on what Changes
// do not track (a gateway's or a steering waypoint's listeners).
type Deps struct {
	hosts     map[string]bool
	listeners map[string]bool
	always    bool
	// fallbackPorts are the port numbers at which the generation asked
	// which service the lazy fallback serves (lazy.go): the answer reads
	// every service the fallback sees and the Sidecar of its namespace.
	fallbackPorts map[uint32]bool
}

// newDeps makes empty Deps.
func newDeps() *Deps {
	return &Deps{hosts: map[string]bool{}, listeners: map[string]bool{}}
}

// readListener notes a host the generation read for its listeners.
func (d *Deps) readListener(h string) {
	if !d.hosts[h] {
		d.listeners[h] = true
	}
}

// read notes a host the generation read wholly (its routes, or a
// cluster of it).
func (d *Deps) read(h string) {
	d.hosts[h] = true
	delete(d.listeners, h)
}

// Affects reports whether the Index's changes may change what Generate
// gives proxy p, whose last generation read d from the Index before.
// Without Changes (an Index built alone) every proxy is affected.
func (ix *Index) Affects(p *Proxy, d *Deps) bool {
	c := ix.changes
	if c == nil || c.All || d == nil || d.always {
		return true
	}
	if c.Namespaces[p.Namespace] {
		return true
	}
	if ix.fallbackMoved(c, d) {
		return true
	}
	if len(c.Hosts) == 0 {
		return false
	}
	// A proxy that becomes a gateway or a waypoint now reads more than
	// its hosts.
	if len(ix.gatewayServers(p)) > 0 || len(ix.waypointPorts(p)) > 0 {
		return true
	}
	sc := ix.sidecarFor(p)
	for h := range c.Hosts {
		if d.hosts[h] {
			return true
		}
		if d.listeners[h] {
			// Only a change of its service reaches its listeners.
			if c.Shapes[h] {
				return true
			}
			continue
		}
		// A host the proxy did not read may be one it now sees.
		if svc := ix.services[h]; svc != nil && ix.sees(p, sc, svc) {
			return true
		}
	}
	return false
}

// fallbackMoved reports whether changes may have given a port number at
// which a generation that read d routes to the lazy fallback to another
// service in the fallback's view: a changed service (or one gone, whose
// ports are not known any more) on such a number, or a change of the
// Sidecar that scopes the fallback. A change that takes a service off
// such a number only makes the fallback serve more, which a generation
// that keeps the routes still serves correctly.
func (ix *Index) fallbackMoved(c *Changes, d *Deps) bool {
	if len(d.fallbackPorts) == 0 {
		return false
	}
	if c.Namespaces[ix.fallbackNamespace()] {
		return true
	}
	for h := range c.Shapes {
		svc := ix.services[h]
		if svc == nil {
			return true
		}
		for _, port := range svc.Ports {
			if d.fallbackPorts[port.Number] {
				return true
			}
		}
	}
	return false
}

// Kinds whose changes are traced to hosts or namespaces; every other kind
// changes All.
const (
	kindService         = "Service"
	kindEndpointSlice   = "EndpointSlice"
	kindPod             = "Pod"
	kindServiceEntry    = "ServiceEntry"
	kindDestinationRule = "DestinationRule"
	kindSidecar         = "Sidecar"
	kindMetaRouter      = "MetaRouter"
	kindTelemetry       = "Telemetry"
)

// eachObject calls f with every object of in and its kind.
func eachObject(in *Inputs, f func(kind string, o metav1.Object)) {
	each(in.Services, kindService, f)
	each(in.EndpointSlices, kindEndpointSlice, f)
	each(in.Pods, kindPod, f)
	each(in.ServiceEntries, kindServiceEntry, f)
	each(in.WorkloadEntries, "WorkloadEntry", f)
	each(in.DestinationRules, kindDestinationRule, f)
	each(in.Sidecars, kindSidecar, f)
	each(in.VirtualServices, "VirtualService", f)
	each(in.Namespaces, "Namespace", f)
	each(in.Gateways, "Gateway", f)
	each(in.MetaRouters, kindMetaRouter, f)
	each(in.ApplicationProtocols, "ApplicationProtocol", f)
	each(in.Secrets, "Secret", f)
	each(in.PeerAuthentications, "PeerAuthentication", f)
	each(in.AuthorizationPolicies, "AuthorizationPolicy", f)
	each(in.MetaAuthorizationPolicies, "MetaAuthorizationPolicy", f)
	each(in.Telemetries, kindTelemetry, f)
	for kind, objs := range in.Objects {
		for _, o := range objs {
			f("object:"+kind, o)
		}
	}
}

func each[T metav1.Object](list []T, kind string, f func(string, metav1.Object)) {
	for _, o := range list {
		f(kind, o)
	}
}

// pushedSet holds the objects behind the last push by identity: a source
// hands an object that did not change over as it was (an informer's
// cache, the folder source's last parse of a file), so finding what
// changed costs a lookup per object, and more only for the objects that
// are new or gone. An object new by identity but equal to one gone under
// its kind, namespace and name (a file rewritten as it was, a status
// update) is no change.
type pushedSet struct {
	objs  map[metav1.Object]*pushedObject
	epoch uint64
	// primed is set once a read was taken in: before, there is nothing
	// to diff with.
	primed bool
}

type pushedObject struct {
	kind string
	seen uint64 // the epoch of the last read that had it
}

type kindObject struct {
	kind string
	obj  metav1.Object
}

// diff finds what changed from the objects the set holds to those of in,
// and makes in's the objects it holds. It returns nil on the first read.
func (s *pushedSet) diff(b *Builder, in *Inputs) *Changes {
	if s.objs == nil {
		s.objs = map[metav1.Object]*pushedObject{}
	}
	s.epoch++
	var fresh []kindObject
	seen := 0
	eachObject(in, func(kind string, o metav1.Object) {
		if e := s.objs[o]; e != nil && e.kind == kind {
			if e.seen != s.epoch {
				e.seen = s.epoch
				seen++
			}
			return
		}
		fresh = append(fresh, kindObject{kind, o})
	})
	// What is gone, by kind/namespace/name: a name given twice (the
	// folder source allows it) has two.
	gone := map[string][]kindObject{}
	if seen < len(s.objs) {
		for o, e := range s.objs {
			if e.seen != s.epoch {
				k := e.kind + "/" + key(o)
				gone[k] = append(gone[k], kindObject{e.kind, o})
				delete(s.objs, o)
			}
		}
	}
	for _, f := range fresh {
		s.objs[f.obj] = &pushedObject{kind: f.kind, seen: s.epoch}
	}
	if !s.primed {
		s.primed = true
		return nil
	}
	c := &Changes{Hosts: map[string]bool{}, Shapes: map[string]bool{}, Namespaces: map[string]bool{}, kinds: map[string]bool{}}
	ix := &Index{opts: b.options()}
	var pods []metav1.Object
	note := func(ko kindObject) {
		c.Objects++
		c.kinds[ko.kind] = true
		if ko.kind == kindPod {
			pods = append(pods, ko.obj)
			return
		}
		c.trace(ix, ko.kind, ko.obj)
	}
	for _, f := range fresh {
		k := f.kind + "/" + key(f.obj)
		olds := gone[k]
		if i := slices.IndexFunc(olds, func(old kindObject) bool { return sameObject(old.obj, f.obj) }); i >= 0 {
			gone[k] = slices.Delete(olds, i, i+1)
			continue
		}
		note(f)
		if len(olds) > 0 {
			// One object changed: both versions reach their hosts.
			note(olds[0])
			c.Objects--
			gone[k] = olds[1:]
		}
	}
	for _, olds := range gone {
		for _, old := range olds {
			note(old)
		}
	}
	if len(pods) > 0 && !c.All {
		c.tracePods(ix, pods, in)
	}
	return c
}

// trace records the hosts or namespaces a changed object of a kind
// reaches, or All.
func (c *Changes) trace(ix *Index, kind string, o metav1.Object) {
	switch kind {
	case kindService:
		h := fmt.Sprintf("%s.%s.svc.%s", o.GetName(), o.GetNamespace(), ix.opts.DomainSuffix)
		c.Hosts[h], c.Shapes[h] = true, true
	case kindEndpointSlice:
		if name := o.GetLabels()[discoveryv1.LabelServiceName]; name != "" {
			c.Hosts[fmt.Sprintf("%s.%s.svc.%s", name, o.GetNamespace(), ix.opts.DomainSuffix)] = true
		}
	case kindServiceEntry:
		se, ok := o.(*networkingv1.ServiceEntry)
		if !ok {
			c.All = true
			return
		}
		for _, h := range se.Spec.GetHosts() {
			c.Hosts[h], c.Shapes[h] = true, true
		}
	case kindDestinationRule:
		dr, ok := o.(*networkingv1.DestinationRule)
		h := ""
		if ok {
			h = ix.qualify(dr.Spec.GetHost(), dr.Namespace)
		}
		// A wildcard rule applies to every host it matches that has no
		// rule of its own.
		if h == "" || strings.HasPrefix(h, "*") {
			c.All = true
			return
		}
		c.Hosts[h] = true
	case kindSidecar, kindTelemetry:
		// Both reach the proxies of their namespace; the root
		// namespace's reach every proxy.
		if o.GetNamespace() == ix.opts.RootNamespace {
			c.All = true
		}
		c.Namespaces[o.GetNamespace()] = true
	case kindMetaRouter:
		mr, ok := o.(*v1alpha1.MetaRouter)
		if !ok || len(mr.Spec.Gateways) > 0 {
			c.All = true
			return
		}
		for _, h := range mr.Spec.Hosts {
			c.Hosts[ix.qualify(h, mr.Namespace)] = true
		}
	default:
		c.All = true
	}
}

// sameObject reports whether two versions of an object are the same to a
// build: equal but for the fields the API server or the controller's own
// status writes change (resourceVersion, managedFields, status).
func sameObject(a, b metav1.Object) bool {
	if a == b {
		return true
	}
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if va.Type() != vb.Type() || va.Kind() != reflect.Pointer || va.IsNil() || vb.IsNil() {
		return false
	}
	if !sameMeta(a, b) {
		return false
	}
	va, vb = va.Elem(), vb.Elem()
	if va.Kind() != reflect.Struct {
		return false
	}
	t := va.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		switch {
		case f.Name == "TypeMeta" || f.Name == "ObjectMeta" || f.Name == "Status":
			continue
		case !f.IsExported():
			return false
		}
		fa, fb := va.Field(i), vb.Field(i)
		if !sameValue(fa, fb) {
			return false
		}
	}
	return true
}

// sameValue compares two fields; a protobuf message (Istio's specs) with
// proto.Equal, as its internal state may differ between equal messages.
func sameValue(a, b reflect.Value) bool {
	if a.CanAddr() {
		if ma, ok := a.Addr().Interface().(proto.Message); ok {
			return proto.Equal(ma, b.Addr().Interface().(proto.Message))
		}
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// sameMeta compares the metadata a build reads.
func sameMeta(a, b metav1.Object) bool {
	ca, cb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
	return a.GetName() == b.GetName() && a.GetNamespace() == b.GetNamespace() &&
		a.GetUID() == b.GetUID() && a.GetGeneration() == b.GetGeneration() &&
		ca.Equal(&cb) &&
		reflect.DeepEqual(a.GetLabels(), b.GetLabels()) &&
		reflect.DeepEqual(a.GetAnnotations(), b.GetAnnotations()) &&
		reflect.DeepEqual(a.GetOwnerReferences(), b.GetOwnerReferences()) &&
		(a.GetDeletionTimestamp() == nil) == (b.GetDeletionTimestamp() == nil)
}

// tracePods records the hosts whose EndpointSlices name a changed Pod:
// its labels and service account are their endpoints'.
func (c *Changes) tracePods(ix *Index, pods []metav1.Object, in *Inputs) {
	changed := map[nsName]bool{}
	for _, p := range pods {
		changed[nsName{p.GetNamespace(), p.GetName()}] = true
	}
	for _, s := range in.EndpointSlices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		for _, e := range s.Endpoints {
			if k, ok := podOf(s, e); ok && changed[k] {
				c.Hosts[fmt.Sprintf("%s.%s.svc.%s", name, s.Namespace, ix.opts.DomainSuffix)] = true
				break
			}
		}
	}
}
