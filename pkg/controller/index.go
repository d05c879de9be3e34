package controller

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	meshconfig "istio.io/api/mesh/v1alpha1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// Options are the mesh-wide settings of a build.
type Options struct {
	// DomainSuffix of Kubernetes service hosts; "cluster.local" when empty.
	DomainSuffix string
	// RootNamespace holds mesh-wide defaults (a Sidecar there applies to
	// namespaces without their own); "istio-system" when empty.
	RootNamespace string
	// Resolve looks up ServiceEntry hosts resolved by DNS; DefaultResolver
	// when nil.
	Resolve Resolver
	// TrustDomain of the mesh's SPIFFE identities, in the names a proxy
	// verifies upstream ("spiffe://<td>/ns/<ns>/sa/<sa>"); when empty, the
	// trust domain of the proxy's own identity, else "cluster.local".
	TrustDomain string
	// SteeringPorts are the waypoint ports steering allocates
	// (steering.go); steering is off when zero.
	SteeringPorts PortRange
	// TraceSampling, when set, turns tracing on in every listener the
	// proxies get: the percentage (0-100) of requests without a sampled
	// caller that start a trace, as Istio's mesh-wide default sampling
	// (istiod's PILOT_TRACE_SAMPLING). Nil: no tracing.
	TraceSampling *float64
	// AccessLog, when set, turns access logs on for every listener the
	// controller sends, as Istio's meshConfig.accessLogFile does for its
	// proxies (rosetta-controller --access-log-file).
	AccessLog *configv1alpha1.AccessLog
	// LazyFallback is the address (a DNS name or IP) of the shared,
	// fully configured proxy that lazy proxies send the calls to
	// destinations they have not learned yet (lazy.go); lazy proxies get
	// every destination's routes when empty. When it is a Kubernetes
	// Service's DNS name, proxies with an identity reach that Service's
	// pods over Istio mTLS.
	LazyFallback string
	// Mesh is Istio's mesh config (rosetta-controller --mesh-config): its
	// extensionProviders and defaultProviders are what Telemetry
	// resources name (telemetry.go). Nil: only Istio's built-in "envoy".
	Mesh *meshconfig.MeshConfig
}

// Index is an immutable view of the mesh, built once per push; every
// proxy's resources are generated from it.
type Index struct {
	opts     Options
	services map[string]*Service
	hosts    []string // sorted
	// byAge are the hosts, oldest service first (then by name): the order
	// in which services that share a port number are settled.
	byAge    []string
	rules    map[string][]*networkingv1.DestinationRule
	sidecars []*networkingv1.Sidecar
	// routers holds, for each host, the MetaRouters that route it, oldest
	// first; each is the last valid version of its object.
	routers map[string][]*v1alpha1.MetaRouter
	// Statuses is the status each MetaRouter should have, by namespace/name.
	Statuses map[string]RouterStatus
	// parts are the translators' shares of the build, by protocol name.
	parts []part
	// peerAuths are the PeerAuthentications, oldest first.
	peerAuths []*securityv1.PeerAuthentication
	// authz are the authorization policies in force, translated.
	authz         []*authzPolicy
	authzStatuses map[string]RouterStatus
	// warnings say what the build could not honour (see Warnings).
	warnings []string
	steer    steering
	// gateways are the Istio Gateways by namespace/name, and
	// gatewayRouters the MetaRouters bound to each, oldest first.
	gateways       map[string]*networkingv1.Gateway
	gatewayRouters map[string][]*v1alpha1.MetaRouter
	// secrets are the Secrets read, by namespace/name.
	secrets map[string]*corev1.Secret
	// serviceNames are the names resolved to make the services, and
	// conflicts the port numbers they share (nil until worked out).
	serviceNames map[string]bool
	conflicts    []portConflict
	// fallback is the lazy fallback's Kubernetes Service, when the
	// fallback address names one (lazy.go).
	fallback *Service
	// fallbackPorts are the hosts the fallback serves by port number,
	// worked out once, at the first lazy generation (lazy.go).
	fallbackOnce  sync.Once
	fallbackPorts map[uint32]string
	// drs are the DestinationRules oldest first, and drWarnings what
	// they ask that the proxies cannot do.
	drs        []*networkingv1.DestinationRule
	drWarnings []string
	// seq numbers the Index; changes are what differs from the Index
	// numbered base (nil when not known: every proxy is affected).
	seq, base uint64
	changes   *Changes
	// refused are the warnings about fields the controller refuses and
	// leaves out (ports.go); Warnings lists them too.
	refused []string
	// telemetry are the Telemetries in force (telemetry.go).
	telemetry telemetryIndex
}

// Warnings are what the build could not honour in objects whose status the
// controller does not write (Istio's): unsupported DestinationRule tls
// modes, AuthorizationPolicy fields a MetaProtocol proxy cannot enforce.
// Sorted, without duplicates.
func (ix *Index) Warnings() []string {
	out := slices.Clone(ix.warnings)
	sort.Strings(out)
	return slices.Compact(out)
}

// Refused are the Warnings about values the controller refuses and
// leaves out of every proxy's config (a port number outside 1-65535),
// which Istio's own validation refuses too. Sorted.
func (ix *Index) Refused() []string {
	out := slices.Clone(ix.refused)
	sort.Strings(out)
	return slices.Compact(out)
}

// RouterStatus is the status the controller computed for a MetaRouter.
type RouterStatus struct {
	Generation int64              `json:"observedGeneration"`
	Conditions []metav1.Condition `json:"conditions"`
}

// Builder builds Indexes. It remembers the last valid version of every
// MetaRouter, so that an invalid update leaves the previous routes in force.
type Builder struct {
	Options Options

	mu        sync.Mutex
	lastValid map[string]*v1alpha1.MetaRouter
	authz     authzMemory // guarded by mu
	dns       dnsMemory
	// translators are the registered protocols' translators.
	translators translatorSet
	// services are the last build's, for the next to reuse.
	services serviceMemo
	// routers are the last build's MetaRouter checks, for the next to
	// reuse; guarded by mu.
	routers routerMemo
	// last is the last Index built, whose parts a build its changes do
	// not reach takes over; guarded by mu.
	last *Index
	// telemetries remembers each Telemetry's last valid version.
	telemetries telemetryMemory
}

// Build makes an Index of in. It does not modify in.
func (b *Builder) Build(in *Inputs) *Index { return b.build(in, nil, 0) }

// build makes an Index of in, whose changes from the inputs of the Index
// numbered base are changes (nil: not known). The MetaRouters' statuses
// are worked out again only where changes may change them.
func (b *Builder) build(in *Inputs, changes *Changes, base uint64) *Index {
	opts := b.options()
	used := map[string]bool{}
	resolve := opts.Resolve
	opts.Resolve = b.dns.resolver(resolve, used)
	defer b.dns.built(used)
	ix := &Index{
		seq:      indexSeq.Add(1),
		opts:     opts,
		routers:  map[string][]*v1alpha1.MetaRouter{},
		Statuses: map[string]RouterStatus{},
		sidecars: slices.Clone(in.Sidecars),
		secrets:  map[string]*corev1.Secret{},
	}
	if changes != nil {
		ix.changes, ix.base = changes, base
	}
	prev := b.previous(ix)
	if prev != nil && !changes.kinds[kindService] && !changes.kinds[kindEndpointSlice] && !changes.kinds[kindPod] && !changes.kinds[kindServiceEntry] {
		// No object services are made of changed: the last build's are
		// these, as are the names they looked up.
		ix.services, ix.hosts, ix.byAge, ix.serviceNames = prev.services, prev.hosts, prev.byAge, prev.serviceNames
		ix.conflicts, ix.fallback = prev.conflicts, prev.fallback
		maps.Copy(used, ix.serviceNames)
	} else {
		ix.serviceNames = map[string]bool{}
		b.indexServices(ix, in, b.dns.resolver(resolve, ix.serviceNames))
		ix.fallback = lazyFallbackService(in, opts, b.dns.resolver(resolve, ix.serviceNames))
		maps.Copy(used, ix.serviceNames)
	}
	sortByName(ix.sidecars)

	if prev != nil && !changes.kinds[kindDestinationRule] {
		ix.rules, ix.drs, ix.drWarnings = prev.rules, prev.drs, prev.drWarnings
	} else {
		ix.rules = map[string][]*networkingv1.DestinationRule{}
		ix.drs = slices.Clone(in.DestinationRules)
		sortByAge(ix.drs)
		for _, dr := range ix.drs {
			h := ix.qualify(dr.Spec.GetHost(), dr.Namespace)
			ix.rules[h] = append(ix.rules[h], dr)
		}
		ix.drWarnings = warnClientTLS(ix.drs)
	}
	b.indexRouters(ix, in, slices.Clone(in.MetaRouters))
	for _, s := range in.Secrets {
		ix.secrets[key(s)] = s
	}
	ix.parts = b.translators.build(ix, in)
	ix.peerAuths = slices.Clone(in.PeerAuthentications)
	sortByAge(ix.peerAuths)
	ix.warnings = append(ix.warnings, ix.drWarnings...)
	b.buildAuthorization(ix, in)
	ix.buildSteering(in)
	ix.warnGateways()
	b.buildTelemetry(ix, in)
	ix.refused = portWarnings(in)
	ix.warnings = append(ix.warnings, ix.refused...)
	return ix
}

// indexServices makes the services of in, resolving names with resolve.
func (b *Builder) indexServices(ix *Index, in *Inputs, resolve Resolver) {
	ix.services = map[string]*Service{}
	protos := newProtocols(slices.Clone(in.ApplicationProtocols))
	svcs := append(kubeServices(in, protos, ix.opts.DomainSuffix, resolve, &b.services), entryServices(in, protos, resolve)...)
	// When a Service and a ServiceEntry (or two entries) claim a host, the
	// oldest wins, as in Istio.
	slices.SortStableFunc(svcs, func(a, b *Service) int {
		if a.created.Before(&b.created) {
			return -1
		}
		if b.created.Before(&a.created) {
			return 1
		}
		return 0
	})
	for _, s := range svcs {
		if _, dup := ix.services[s.Host]; !dup {
			ix.services[s.Host] = s
			ix.hosts = append(ix.hosts, s.Host)
		}
	}
	sort.Strings(ix.hosts)
	ix.byAge = hostsByAge(ix.services, ix.hosts)
}

// previous returns the Builder's last Index when ix's Changes are
// relative to it, so that the parts of it no change reaches can be taken
// over; nil otherwise. It makes ix the last Index.
func (b *Builder) previous(ix *Index) *Index {
	b.mu.Lock()
	defer b.mu.Unlock()
	prev := b.last
	b.last = ix
	if prev == nil || ix.changes == nil || ix.changes.All || ix.base != prev.seq {
		return nil
	}
	return prev
}

// options are the Builder's Options with their defaults filled in.
func (b *Builder) options() Options {
	opts := b.Options
	if opts.DomainSuffix == "" {
		opts.DomainSuffix = "cluster.local"
	}
	if opts.RootNamespace == "" {
		opts.RootNamespace = "istio-system"
	}
	if opts.Resolve == nil {
		opts.Resolve = DefaultResolver
	}
	return opts
}

// hostsByAge orders hosts by their service's age, oldest first, then by name.
func hostsByAge(services map[string]*Service, hosts []string) []string {
	svcs := make([]*Service, len(hosts))
	for i, h := range hosts {
		svcs[i] = services[h]
	}
	slices.SortStableFunc(svcs, func(a, b *Service) int {
		if !a.created.Equal(&b.created) {
			if a.created.Before(&b.created) {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Host, b.Host)
	})
	out := make([]string, len(svcs))
	for i, s := range svcs {
		out[i] = s.Host
	}
	return out
}

// qualify turns a short Kubernetes name ("greeter") into a host relative
// to ns ("greeter.<ns>.svc.cluster.local"), as Istio does.
func (ix *Index) qualify(host, ns string) string {
	if host == "" || strings.Contains(host, ".") || strings.HasPrefix(host, "*") {
		return host
	}
	return fmt.Sprintf("%s.%s.svc.%s", host, ns, ix.opts.DomainSuffix)
}

func (b *Builder) indexRouters(ix *Index, in *Inputs, mrs []*v1alpha1.MetaRouter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lastValid == nil {
		b.lastValid = map[string]*v1alpha1.MetaRouter{}
	}
	memo := b.routers.start(ix)
	defer b.routers.end(ix)
	effective := inForce(mrs, b.lastValid, ix.Statuses, "", memo.validate, memo.key)
	for _, mr := range mrs {
		// Valid routers start with no conditions; the index adds them.
		k := memo.key(mr)
		if _, rejected := ix.Statuses[k]; !rejected {
			ix.Statuses[k] = RouterStatus{Generation: mr.Generation}
		}
	}
	for _, mr := range effective {
		if !bindsMesh(mr) {
			continue
		}
		for _, h := range mr.Spec.Hosts {
			h = ix.qualify(h, mr.Namespace)
			ix.routers[h] = append(ix.routers[h], mr)
		}
	}
	ix.indexGateways(in, effective)
	for _, mr := range effective {
		k := memo.key(mr)
		st := ix.Statuses[k]
		if len(st.Conditions) > 0 {
			continue // invalid now; its previous version is in force
		}
		st.Conditions = memo.conditions(ix, mr)
		ix.Statuses[k] = st
	}
}

// routerMemo keeps what the last build found of each MetaRouter object:
// its validation, and its conditions with the hosts they read. The next
// build validates only objects it has not seen, and works out again only
// the conditions of routers that changed or read a host whose objects
// changed (the Index's Changes, relative to the build the memo is from).
// Checking every router was a seventh of an edit's cost at 1,000
// services.
type routerMemo struct {
	// seq is the Index the entries are from.
	seq        uint64
	last, next map[*v1alpha1.MetaRouter]*routerEntry
	// reuse says whether the conditions of last hold for the build
	// under way, where it read no changed host.
	reuse   bool
	changed map[string]bool
}

type routerEntry struct {
	key       string
	validated bool
	errs      field.ErrorList
	// conds, when not nil, are the conditions of a router in force, and
	// reads the hosts they depend on.
	conds []metav1.Condition
	reads []string
}

// start begins ix's build; callers hold the Builder's mu.
func (m *routerMemo) start(ix *Index) *routerMemo {
	c := ix.changes
	m.reuse = c != nil && !c.All && ix.base == m.seq
	m.changed = nil
	if m.reuse {
		m.changed = c.Hosts
	}
	m.next = make(map[*v1alpha1.MetaRouter]*routerEntry, len(m.last))
	return m
}

func (m *routerMemo) end(ix *Index) {
	m.last, m.next, m.seq = m.next, nil, ix.seq
}

// entry is the build's entry of mr, carried over from the last build.
func (m *routerMemo) entry(mr *v1alpha1.MetaRouter) *routerEntry {
	if e := m.next[mr]; e != nil {
		return e
	}
	e := m.last[mr]
	if e == nil {
		e = &routerEntry{}
	}
	m.next[mr] = e
	return e
}

// key is key(mr), made once per object.
func (m *routerMemo) key(mr *v1alpha1.MetaRouter) string {
	e := m.entry(mr)
	if e.key == "" {
		e.key = key(mr)
	}
	return e.key
}

func (m *routerMemo) validate(mr *v1alpha1.MetaRouter) field.ErrorList {
	e := m.entry(mr)
	if !e.validated {
		e.errs, e.validated = mr.Validate(), true
	}
	return e.errs
}

// conditions are Accepted and ResolvedRefs of a valid router in force:
// the last build's when they hold. A router bound to a Gateway reads what
// Changes do not trace (other routers of the Gateway), and is always
// checked again.
func (m *routerMemo) conditions(ix *Index, mr *v1alpha1.MetaRouter) []metav1.Condition {
	e := m.entry(mr)
	meshOnly := !slices.ContainsFunc(mr.Spec.Gateways, func(g string) bool { return g != meshGateway })
	if m.reuse && meshOnly && e.conds != nil && !slices.ContainsFunc(e.reads, func(h string) bool { return m.changed[h] }) {
		return e.conds
	}
	e.conds = []metav1.Condition{ix.acceptedCondition(mr), ix.refsCondition(mr)}
	e.reads = routerReads(ix, mr)
	return e.conds
}

// routerReads are the hosts a router's conditions depend on: its hosts
// (who else routes them) and its destinations' (whether they exist, and
// their subsets).
func routerReads(ix *Index, mr *v1alpha1.MetaRouter) []string {
	var out []string
	for _, h := range mr.Spec.Hosts {
		out = append(out, ix.qualify(h, mr.Namespace))
	}
	for _, r := range mr.Spec.Routes {
		for _, d := range r.Route {
			out = append(out, ix.qualify(d.Destination.Host, mr.Namespace))
		}
		if r.Mirror != nil {
			out = append(out, ix.qualify(r.Mirror.Host, mr.Namespace))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// acceptedCondition settles host conflicts: for each host the oldest
// MetaRouter wins (Aeraki picks one at random).
func (ix *Index) acceptedCondition(mr *v1alpha1.MetaRouter) metav1.Condition {
	var lost []string
	if bindsMesh(mr) {
		for i, h := range mr.Spec.Hosts {
			q := ix.qualify(h, mr.Namespace)
			if w := ix.routers[q][0]; key(w) != key(mr) {
				lost = append(lost, fmt.Sprintf("spec.hosts[%d]: %s is routed by the older MetaRouter %s", i, q, key(w)))
			}
		}
	}
	_, gwLost := ix.gatewayConflicts(mr)
	places := len(mr.Spec.Gateways)
	if places == 0 {
		places = 1
	}
	switch {
	case len(gwLost) > 0 && len(lost)+len(gwLost) >= len(mr.Spec.Hosts)*places:
		return cond(v1alpha1.ConditionAccepted, false, v1alpha1.ReasonConflict, strings.Join(append(lost, gwLost...), "; "), mr.Generation)
	case len(gwLost) > 0:
		return cond(v1alpha1.ConditionAccepted, true, v1alpha1.ReasonConflict, "in force where not taken; "+strings.Join(append(lost, gwLost...), "; "), mr.Generation)
	case len(lost) == len(mr.Spec.Hosts):
		return cond(v1alpha1.ConditionAccepted, false, v1alpha1.ReasonConflict, strings.Join(lost, "; "), mr.Generation)
	case len(lost) > 0:
		return cond(v1alpha1.ConditionAccepted, true, v1alpha1.ReasonConflict, "in force for its other hosts; "+strings.Join(lost, "; "), mr.Generation)
	}
	return cond(v1alpha1.ConditionAccepted, true, v1alpha1.ReasonAccepted, "in force", mr.Generation)
}

// refsCondition tells whether every destination exists. A missing one is
// not an error of the object (the Service may come later), but calls to it
// fail until it does.
func (ix *Index) refsCondition(mr *v1alpha1.MetaRouter) metav1.Condition {
	var missing []string
	reason := v1alpha1.ReasonResolved
	check := func(p *field.Path, d *v1alpha1.Destination) {
		h := ix.qualify(d.Host, mr.Namespace)
		if _, ok := ix.services[h]; !ok {
			missing = append(missing, fmt.Sprintf("%s: no MetaProtocol service %s", p.Child("host"), h))
			reason = v1alpha1.ReasonUnknownHost
			return
		}
		if d.Subset != "" && ix.subset(h, d.Subset) == nil {
			missing = append(missing, fmt.Sprintf("%s: no DestinationRule defines subset %q of %s", p.Child("subset"), d.Subset, h))
			if reason == v1alpha1.ReasonResolved {
				reason = v1alpha1.ReasonUnknownSubet
			}
		}
	}
	routes := field.NewPath("spec", "routes")
	for i, r := range mr.Spec.Routes {
		for j := range r.Route {
			check(routes.Index(i).Child("route").Index(j).Child("destination"), &r.Route[j].Destination)
		}
		if r.Mirror != nil {
			check(routes.Index(i).Child("mirror"), r.Mirror)
		}
	}
	if gws, _ := ix.gatewayConflicts(mr); len(gws) > 0 {
		missing = append(missing, gws...)
		if reason == v1alpha1.ReasonResolved {
			reason = ReasonUnknownGateway
		}
	}
	if len(missing) > 0 {
		return cond(v1alpha1.ConditionResolvedRefs, false, reason, strings.Join(missing, "; "), mr.Generation)
	}
	return cond(v1alpha1.ConditionResolvedRefs, true, v1alpha1.ReasonResolved, "every destination exists", mr.Generation)
}

func cond(t string, ok bool, reason, msg string, gen int64) metav1.Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen}
}

// Service returns the MetaProtocol service of a host.
func (ix *Index) Service(host string) *Service { return ix.services[host] }

// Hosts lists the MetaProtocol service hosts, sorted.
func (ix *Index) Hosts() []string { return ix.hosts }

// router returns the MetaRouter in force for host, as seen from a proxy in
// namespace ns: the oldest one exported to ns.
func (ix *Index) router(host, ns string) *v1alpha1.MetaRouter {
	for _, mr := range ix.routers[host] {
		if visibleTo(mr.Spec.ExportTo, mr.Namespace, ns) {
			return mr
		}
	}
	return nil
}
