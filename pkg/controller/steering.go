package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"

	"istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Steering sends the connections meshed callers make to a MetaProtocol
// Service's port to a Rosetta waypoint, with stock Istio sidecars
// (docs/mesh-integration.md). A Service (or its namespace) opts in with
// UseWaypointLabel, naming the waypoint's Service. For each opted-in port
// the controller allocates a port of its own on the waypoint (so services
// that share a port number stay apart), publishes it on a Service it owns
// next to the waypoint's, and writes a VirtualService that sends the
// callers' connections there; the waypoint gets a listener on that port
// serving the service's routes.

// Labels a user sets.
const (
	// UseWaypointLabel on a Service or a Namespace names the Service of the
	// Rosetta waypoint its MetaProtocol ports are steered to; "none" on a
	// Service opts it out of its namespace's choice. Istio's ambient
	// opt-in, istio.io/use-waypoint, is the model.
	UseWaypointLabel = "metaprotocol.rosetta.dev/use-waypoint"
	// UseWaypointNamespaceLabel names the waypoint's namespace when it is
	// not the labelled object's.
	UseWaypointNamespaceLabel = "metaprotocol.rosetta.dev/use-waypoint-namespace"
	// NoWaypoint is the UseWaypointLabel value that opts out.
	NoWaypoint = "none"
)

// Labels and annotations on the objects the controller writes.
const (
	// ManagedByLabel marks what the controller owns: it writes and
	// deletes only objects with this label set to ManagedBy.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "rosetta-controller"
	// SteeringOfLabel says what an owned object steers for: on a steering
	// Service the waypoint's name, on a VirtualService the steered
	// Service's name.
	SteeringOfLabel = "metaprotocol.rosetta.dev/steering-of"
	// SpecHashAnnotation is a hash of what the controller applied, so it
	// writes an object again only when that changes.
	SpecHashAnnotation = "metaprotocol.rosetta.dev/spec-hash"
)

// Condition types the controller keeps on Services.
const (
	// ConditionSteered says whether callers are steered to the waypoint:
	// present on opted-in Services only.
	ConditionSteered = "metaprotocol.rosetta.dev/Steered"
	// ConditionPortConflict is present, True, on a Service whose
	// MetaProtocol port number an older Service of its namespace also has,
	// and which is not steered: a proxy that sees both serves the older
	// one on that number.
	ConditionPortConflict = "metaprotocol.rosetta.dev/PortConflict"
)

// Reasons of those conditions.
const (
	ReasonSteered                   = "Steered"
	ReasonWaypointNotFound          = "WaypointNotFound"
	ReasonConflictingVirtualService = "ConflictingVirtualService"
	ReasonNoSteeringPort            = "NoSteeringPort"
	ReasonSteeringServiceTaken      = "SteeringServiceTaken"
	ReasonPortInUse                 = "PortInUse"
)

// PortRange is an inclusive range of port numbers.
type PortRange struct{ First, Last uint32 }

// DefaultSteeringPorts are the waypoint ports steering allocates.
var DefaultSteeringPorts = PortRange{First: 41000, Last: 41999}

// ParsePortRange reads "first-last".
func ParsePortRange(s string) (PortRange, error) {
	var r PortRange
	if _, err := fmt.Sscanf(s, "%d-%d", &r.First, &r.Last); err != nil || r.First == 0 || r.Last < r.First || r.Last > 65535 {
		return PortRange{}, fmt.Errorf("port range %q: want first-last, 1 <= first <= last <= 65535", s)
	}
	return r, nil
}

// Waypoint is a Rosetta waypoint as steering knows it: the Service callers
// are steered to, and the pods it selects (the waypoint proxies, which
// state the same namespace and labels in their node metadata).
type Waypoint struct {
	Namespace, Name string
	Selector        map[string]string
}

func (w *Waypoint) key() string { return w.Namespace + "/" + w.Name }

// steeringServiceName is the name of the Service that publishes a
// waypoint's steering ports.
func steeringServiceName(waypoint string) string {
	name := waypoint + "-steering"
	if len(name) > 63 {
		sum := sha256.Sum256([]byte(waypoint))
		name = waypoint[:44] + "-" + hex.EncodeToString(sum[:5]) + "-steering"
	}
	return name
}

// steeringVSName is the name of the VirtualService that steers a Service.
func steeringVSName(service string) string { return "rosetta-steering-" + service }

// steeringPortName names the steering Service's port for a host's port, so
// the allocation can be read back from it: tcp (Istio forwards bytes), and
// a hash of the destination.
func steeringPortName(host string, port uint32) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s:%d", host, port))
	return "tcp-" + hex.EncodeToString(sum[:5])
}

// SteeredPort is one steered service port: the port callers dial, and the
// waypoint's port their connections are sent to.
type SteeredPort struct {
	Host     string
	Port     uint32
	Steering uint32
}

// steering is what an Index knows of steering.
type steering struct {
	// ports are each waypoint's steered ports, by Waypoint.key, sorted.
	ports     map[string][]SteeredPort
	waypoints map[string]*Waypoint
	// owned are the objects the controller should own now.
	owned OwnedObjects
	// conditions are the controller's conditions of each Service, by
	// namespace/name; Services without any are absent.
	conditions map[string][]metav1.Condition
}

// OwnedObjects are the Istio and Kubernetes objects steering writes.
type OwnedObjects struct {
	VirtualServices []*networkingv1.VirtualService
	Services        []*corev1.Service
}

// ServiceConditions are the conditions the controller keeps on Services,
// by namespace/name: Steered on opted-in Services, PortConflict on
// Services that lose a shared port number.
func (ix *Index) ServiceConditions() map[string][]metav1.Condition { return ix.steer.conditions }

// Owned are the objects the controller should own: steering Services and
// VirtualServices.
func (ix *Index) Owned() OwnedObjects { return ix.steer.owned }

// SteeredPorts lists the steered ports of a waypoint's Service.
func (ix *Index) SteeredPorts(ns, waypoint string) []SteeredPort {
	return ix.steer.ports[ns+"/"+waypoint]
}

// steeringInput is one opted-in Service and where it asks to be steered.
type steeringInput struct {
	svc      *corev1.Service
	host     string
	ports    []Port
	waypoint string // namespace/name
}

// buildSteering opts Services in, allocates steering ports and makes the
// objects and conditions of steering. Without a port range (folder mode,
// where nothing can write them), it only reports port conflicts.
func (ix *Index) buildSteering(in *Inputs) {
	ix.steer = steering{ports: map[string][]SteeredPort{}, waypoints: map[string]*Waypoint{}, conditions: map[string][]metav1.Condition{}}
	steered := map[string]bool{}
	if ix.opts.SteeringPorts.Last != 0 {
		for _, sp := range ix.optedIn(in) {
			if ix.steerService(in, sp) {
				steered[sp.host] = true
			}
		}
		ix.allocate(in)
	}
	ix.reportPortConflicts(steered)
}

// optedIn finds the MetaProtocol Services that ask to be steered, by name.
func (ix *Index) optedIn(in *Inputs) []steeringInput {
	nsLabels := map[string]map[string]string{}
	for _, n := range in.Namespaces {
		nsLabels[n.Name] = n.Labels
	}
	var out []steeringInput
	for _, ks := range in.Services {
		host := fmt.Sprintf("%s.%s.svc.%s", ks.Name, ks.Namespace, ix.opts.DomainSuffix)
		svc := ix.services[host]
		if svc == nil || svc.Kind != "Service" || ks.Labels[ManagedByLabel] == ManagedBy {
			continue
		}
		wp := waypointOf(ks.Labels, nsLabels[ks.Namespace], ks.Namespace)
		if wp == "" || wp == key(ks) {
			continue
		}
		out = append(out, steeringInput{svc: ks, host: host, ports: svc.Ports, waypoint: wp})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].host < out[j].host })
	return out
}

// waypointOf is the waypoint (namespace/name) a Service's labels, else its
// namespace's, ask for; "" when none.
func waypointOf(svc, ns map[string]string, namespace string) string {
	labels := svc
	if _, ok := svc[UseWaypointLabel]; !ok {
		labels = ns
	}
	name := labels[UseWaypointLabel]
	if name == "" || name == NoWaypoint {
		return ""
	}
	if wns := labels[UseWaypointNamespaceLabel]; wns != "" {
		namespace = wns
	}
	return namespace + "/" + name
}

// steerService checks that an opted-in Service can be steered and records
// its ports for allocation, or a Steered=False condition saying why not.
func (ix *Index) steerService(in *Inputs, sp steeringInput) bool {
	k := key(sp.svc)
	wp, reason, msg := ix.waypoint(in, sp.waypoint)
	if wp == nil {
		ix.steer.conditions[k] = []metav1.Condition{cond(ConditionSteered, false, reason, msg, 0)}
		return false
	}
	if vs := ix.conflictingVirtualService(in, sp); vs != "" {
		ix.steer.conditions[k] = []metav1.Condition{cond(ConditionSteered, false, ReasonConflictingVirtualService,
			fmt.Sprintf("VirtualService %s also routes %s; the controller leaves it alone and does not steer this Service", vs, sp.host), 0)}
		return false
	}
	for _, p := range sp.ports {
		ix.steer.ports[wp.key()] = append(ix.steer.ports[wp.key()], SteeredPort{Host: sp.host, Port: p.Number})
	}
	return true
}

// waypoint resolves namespace/name to a waypoint: a Service with a
// selector, whose steering Service's name is free or the controller's.
func (ix *Index) waypoint(in *Inputs, k string) (*Waypoint, string, string) {
	if w := ix.steer.waypoints[k]; w != nil {
		return w, "", ""
	}
	ns, name, _ := strings.Cut(k, "/")
	var found *corev1.Service
	for _, s := range in.Services {
		if s.Namespace == ns && s.Name == name {
			found = s
		}
	}
	if found == nil || len(found.Spec.Selector) == 0 {
		return nil, ReasonWaypointNotFound, fmt.Sprintf("no Service %s with a selector: %s names the waypoint's Service", k, UseWaypointLabel)
	}
	steerName := steeringServiceName(name)
	for _, s := range in.Services {
		if s.Namespace == ns && s.Name == steerName && s.Labels[ManagedByLabel] != ManagedBy {
			return nil, ReasonSteeringServiceTaken, fmt.Sprintf("Service %s/%s, where the controller would publish the waypoint's steering ports, is not the controller's", ns, steerName)
		}
	}
	w := &Waypoint{Namespace: ns, Name: name, Selector: found.Spec.Selector}
	ix.steer.waypoints[k] = w
	return w, "", ""
}

// conflictingVirtualService names a VirtualService, not the controller's,
// that routes the Service's host (or holds the name of the one the
// controller would write); "" when none.
func (ix *Index) conflictingVirtualService(in *Inputs, sp steeringInput) string {
	for _, vs := range in.VirtualServices {
		if vs.Labels[ManagedByLabel] == ManagedBy || !appliesToMesh(vs) {
			continue
		}
		if vs.Namespace == sp.svc.Namespace && vs.Name == steeringVSName(sp.svc.Name) {
			return key(vs)
		}
		for _, h := range vs.Spec.GetHosts() {
			if hostMatches(ix.qualify(h, vs.Namespace), sp.host) {
				return key(vs)
			}
		}
	}
	return ""
}

// appliesToMesh reports whether a VirtualService routes sidecars' traffic
// (no gateways, or the "mesh" one) rather than only a Gateway's.
func appliesToMesh(vs *networkingv1.VirtualService) bool {
	gws := vs.Spec.GetGateways()
	return len(gws) == 0 || slices.Contains(gws, "mesh")
}

// allocate gives every steered port a waypoint port: the one its steering
// Service already publishes when still free, else the lowest free one.
// Port numbers of MetaProtocol services are never used, so a waypoint's
// listeners do not collide.
func (ix *Index) allocate(in *Inputs) {
	reserved := map[uint32]bool{}
	for _, s := range ix.services {
		for _, p := range s.Ports {
			reserved[p.Number] = true
		}
	}
	keys := make([]string, 0, len(ix.steer.ports))
	for k := range ix.steer.ports {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w := ix.steer.waypoints[k]
		ports := ix.steer.ports[k]
		sort.Slice(ports, func(i, j int) bool {
			if ports[i].Host != ports[j].Host {
				return ports[i].Host < ports[j].Host
			}
			return ports[i].Port < ports[j].Port
		})
		ix.steer.ports[k] = ix.assign(w, ports, publishedPorts(in, w), reserved)
	}
	ix.makeOwned(in)
}

// publishedPorts reads a waypoint's current allocation from its steering
// Service: port name to number.
func publishedPorts(in *Inputs, w *Waypoint) map[string]uint32 {
	out := map[string]uint32{}
	name := steeringServiceName(w.Name)
	for _, s := range in.Services {
		if s.Namespace != w.Namespace || s.Name != name || s.Labels[ManagedByLabel] != ManagedBy {
			continue
		}
		for _, p := range s.Spec.Ports {
			out[p.Name] = uint32(p.Port)
		}
	}
	return out
}

// assign allocates the ports of one waypoint; ports that get none are
// dropped and their Services get Steered=False.
func (ix *Index) assign(w *Waypoint, ports []SteeredPort, published map[string]uint32, reserved map[uint32]bool) []SteeredPort {
	r := ix.opts.SteeringPorts
	used := map[uint32]bool{}
	for i, p := range ports {
		n, ok := published[steeringPortName(p.Host, p.Port)]
		if ok && n >= r.First && n <= r.Last && !reserved[n] && !used[n] {
			ports[i].Steering = n
			used[n] = true
		}
	}
	next := r.First
	out := ports[:0]
	for _, p := range ports {
		for p.Steering == 0 && next <= r.Last {
			if !used[next] && !reserved[next] {
				p.Steering = next
				used[next] = true
			}
			next++
		}
		if p.Steering == 0 {
			ix.noSteeringPort(w, p)
			continue
		}
		out = append(out, p)
	}
	return out
}

func (ix *Index) noSteeringPort(w *Waypoint, p SteeredPort) {
	svc := ix.services[p.Host]
	r := ix.opts.SteeringPorts
	ix.steer.conditions[svc.Namespace+"/"+svc.Name] = []metav1.Condition{cond(ConditionSteered, false, ReasonNoSteeringPort,
		fmt.Sprintf("waypoint %s has no free steering port for port %d (the controller's --steering-ports are %d-%d)", w.key(), p.Port, r.First, r.Last), 0)}
}

// makeOwned makes the steering Services and VirtualServices, and the
// Steered=True conditions.
func (ix *Index) makeOwned(in *Inputs) {
	byService := map[string][]SteeredPort{}
	via := map[string]*Waypoint{}
	for k, ports := range ix.steer.ports {
		w := ix.steer.waypoints[k]
		if len(ports) > 0 {
			ix.steer.owned.Services = append(ix.steer.owned.Services, steeringService(w, ports, in))
		}
		for _, p := range ports {
			svc := ix.services[p.Host]
			sk := svc.Namespace + "/" + svc.Name
			if _, failed := ix.steer.conditions[sk]; failed {
				continue
			}
			byService[sk] = append(byService[sk], p)
			via[sk] = w
		}
	}
	sortByName(ix.steer.owned.Services)
	for sk, ports := range byService {
		w := via[sk]
		svc := ix.services[ports[0].Host]
		ix.steer.owned.VirtualServices = append(ix.steer.owned.VirtualServices, ix.steeringVirtualService(svc, w, ports))
		var parts []string
		for _, p := range ports {
			parts = append(parts, fmt.Sprintf("%d to %d", p.Port, p.Steering))
		}
		ix.steer.conditions[sk] = []metav1.Condition{cond(ConditionSteered, true, ReasonSteered,
			fmt.Sprintf("callers' connections go to waypoint %s: port %s of Service %s/%s", w.key(), strings.Join(parts, ", "), w.Namespace, steeringServiceName(w.Name)), 0)}
	}
	sortByName(ix.steer.owned.VirtualServices)
}

// steeringService publishes a waypoint's steering ports, selecting its
// pods. It is owned by the waypoint's Service.
func steeringService(w *Waypoint, ports []SteeredPort, in *Inputs) *corev1.Service {
	s := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: steeringServiceName(w.Name),
			Labels: map[string]string{ManagedByLabel: ManagedBy, SteeringOfLabel: w.Name}},
		Spec: corev1.ServiceSpec{Selector: w.Selector},
	}
	tcp := "tcp"
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: steeringPortName(p.Host, p.Port), Protocol: corev1.ProtocolTCP,
			AppProtocol: &tcp, Port: int32(p.Steering), TargetPort: intOrPort(p.Steering)})
	}
	for _, ks := range in.Services {
		if ks.Namespace == w.Namespace && ks.Name == w.Name {
			s.OwnerReferences = []metav1.OwnerReference{ownerRef(ks)}
		}
	}
	return s
}

// steeringVirtualService sends callers' connections to the Service's
// steered ports to the waypoint's steering ports, except the waypoint's
// own: their first route matches the waypoint's pods (Istio evaluates
// sourceLabels per proxy) and keeps the real destination, so the waypoint
// is never steered to itself. It is owned by the Service.
func (ix *Index) steeringVirtualService(svc *Service, w *Waypoint, ports []SteeredPort) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "VirtualService"},
		ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: steeringVSName(svc.Name),
			Labels: map[string]string{ManagedByLabel: ManagedBy, SteeringOfLabel: svc.Name}},
	}
	vs.Spec.Hosts = []string{svc.Host}
	steeringHost := fmt.Sprintf("%s.%s.svc.%s", steeringServiceName(w.Name), w.Namespace, ix.opts.DomainSuffix)
	for _, p := range ports {
		vs.Spec.Tcp = append(vs.Spec.Tcp, tcpRoute(svc.Host, p.Port, p.Port, w), tcpRoute(steeringHost, p.Steering, p.Port, nil))
	}
	if svc.uid != "" {
		vs.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.uid}}
	}
	return vs
}

// tcpRoute sends connections to port match to host:port; with a waypoint,
// only the waypoint's own.
func tcpRoute(host string, port, match uint32, w *Waypoint) *v1alpha3.TCPRoute {
	m := &v1alpha3.L4MatchAttributes{Port: match}
	if w != nil {
		m.SourceLabels, m.SourceNamespace = w.Selector, w.Namespace
	}
	return &v1alpha3.TCPRoute{
		Match: []*v1alpha3.L4MatchAttributes{m},
		Route: []*v1alpha3.RouteDestination{{Destination: &v1alpha3.Destination{Host: host, Port: &v1alpha3.PortSelector{Number: port}}}},
	}
}

func intOrPort(n uint32) intstr.IntOrString { return intstr.FromInt32(int32(n)) }

// ownerRef makes a Kubernetes Service the owner of an object, so that the
// object goes when the Service does even if the controller is down.
func ownerRef(s *corev1.Service) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "v1", Kind: "Service", Name: s.Name, UID: s.UID}
}

// reportPortConflicts adds PortConflict to the Services that lose a port
// number to an older Service of their namespace and are not steered, and
// a warning for ServiceEntries in that place.
func (ix *Index) reportPortConflicts(steered map[string]bool) {
	if ix.conflicts == nil {
		ix.conflicts = ix.portConflicts()
	}
	for _, c := range ix.conflicts {
		if steered[c.loser.Host] {
			continue
		}
		msg := fmt.Sprintf("port %d is also a MetaProtocol port of the older %s %s/%s: a proxy that sees both serves that one on %d; steer this Service to a waypoint (label %s) to give it a port of its own",
			c.port, c.winner.Kind, c.winner.Namespace, c.winner.Name, c.port, UseWaypointLabel)
		if c.loser.Kind != "Service" {
			ix.warnings = append(ix.warnings, fmt.Sprintf("%s %s/%s: %s", c.loser.Kind, c.loser.Namespace, c.loser.Name, msg))
			continue
		}
		k := c.loser.Namespace + "/" + c.loser.Name
		ix.steer.conditions[k] = append(ix.steer.conditions[k], cond(ConditionPortConflict, true, ReasonPortInUse, msg, 0))
	}
}

type portConflict struct {
	port          uint32
	winner, loser *Service
}

// portConflicts lists, for each namespace, the services whose MetaProtocol
// port number an older service of the namespace also has (the oldest keeps
// it, as for hosts). Services of different namespaces are apart when
// proxies are scoped to their namespace, as waypoints are.
func (ix *Index) portConflicts() []portConflict {
	type nsPort struct {
		ns   string
		port uint32
	}
	first := map[nsPort]*Service{}
	out := []portConflict{}
	for _, h := range ix.byAge {
		svc := ix.services[h]
		for _, p := range svc.Ports {
			k := nsPort{svc.Namespace, p.Number}
			if w := first[k]; w != nil {
				out = append(out, portConflict{port: p.Number, winner: w, loser: svc})
				continue
			}
			first[k] = svc
		}
	}
	return out
}

// waypointPorts returns the steered ports a proxy serves as a waypoint:
// those of every waypoint whose Service selects it.
func (ix *Index) waypointPorts(p *Proxy) []SteeredPort {
	var out []SteeredPort
	for k, w := range ix.steer.waypoints {
		if w.Namespace == p.Namespace && labels.SelectorFromSet(w.Selector).Matches(labels.Set(p.Labels)) {
			out = append(out, ix.steer.ports[k]...)
		}
	}
	return out
}
