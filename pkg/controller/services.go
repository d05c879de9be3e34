package controller

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// Service is a MetaProtocol service: a host with at least one port of a
// known protocol, and its endpoints.
type Service struct {
	Host      string
	Namespace string
	// Ports are the MetaProtocol ports only, by number.
	Ports     []Port
	Endpoints []Endpoint
	// ExportTo lists the namespaces that see the service; nil: all.
	ExportTo []string
	// Kind and Name are the object that defines the service: a Kubernetes
	// "Service" or an Istio "ServiceEntry" (policies' targetRefs name them).
	Kind, Name string
	// SubjectAltNames are a ServiceEntry's subjectAltNames: the identities
	// its endpoints' certificates may carry, besides their service accounts'.
	SubjectAltNames []string
	// Addresses are the service's virtual IPs (a Service's ClusterIPs, a
	// ServiceEntry's addresses): what callers dial, and what an HBONE
	// CONNECT for the service names.
	Addresses []string
	// created orders services that claim the same host: the oldest wins.
	created metav1.Time
	// uid is a Kubernetes Service's, for the objects it owns.
	uid types.UID
}

// Port is a service port whose protocol is known.
type Port struct {
	Number   uint32
	Name     string
	Protocol Protocol
}

// Endpoint is one instance of a service.
type Endpoint struct {
	Address string
	// Ports maps a service port number to the instance's port.
	Ports  map[uint32]uint32
	Labels map[string]string
	// ServiceAccount is the endpoint's workload identity, as
	// "namespace/name": its Pod's service account, or a WorkloadEntry's or
	// ServiceEntry endpoint's serviceAccount; "" when unknown.
	ServiceAccount string
	// Workload and Namespace name the workload the endpoint belongs to, as
	// Istio's metrics label it: a Pod's Deployment (its ReplicaSet's name
	// without the pod-template-hash), other owner or own name; "" when
	// unknown.
	Workload, Namespace string
}

// Port returns the service port with the given number.
func (s *Service) Port(n uint32) (Port, bool) {
	for _, p := range s.Ports {
		if p.Number == n {
			return p, true
		}
	}
	return Port{}, false
}

// kubeServices builds MetaProtocol services from Kubernetes Services, their
// EndpointSlices and Pods. An endpoint's labels are its Pod's labels over
// its EndpointSlice's own labels (other than the kubernetes.io ones), so a
// hand-made slice can label endpoints that have no Pod.
func kubeServices(in *Inputs, protos protocols, domain string, resolve Resolver, memo *serviceMemo) []*Service {
	pods := map[nsName]*corev1.Pod{}
	for _, p := range in.Pods {
		pods[nsName{p.Namespace, p.Name}] = p
	}
	bySvc := map[nsName][]*discoveryv1.EndpointSlice{}
	for _, s := range in.EndpointSlices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name != "" {
			key := nsName{s.Namespace, name}
			bySvc[key] = append(bySvc[key], s)
		}
	}
	memo.start(in.ApplicationProtocols, domain)
	var out []*Service
	for _, ks := range in.Services {
		ss := bySvc[nsName{ks.Namespace, ks.Name}]
		if len(ss) > 1 {
			slices.SortFunc(ss, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
		}
		svc, ok := memo.lookup(ks, ss, pods)
		if !ok {
			svc = kubeService(ks, ss, protos, domain, pods, resolve)
			memo.keep(ks, ss, pods, svc)
		}
		if svc != nil {
			out = append(out, svc)
		}
	}
	memo.end()
	return out
}

// kubeService builds the MetaProtocol service of a Kubernetes Service and
// its EndpointSlices ss; nil when it has no MetaProtocol port.
func kubeService(ks *corev1.Service, ss []*discoveryv1.EndpointSlice, protos protocols, domain string, pods map[nsName]*corev1.Pod, resolve Resolver) *Service {
	svc := &Service{
		Host:      fmt.Sprintf("%s.%s.svc.%s", ks.Name, ks.Namespace, domain),
		Namespace: ks.Namespace,
		ExportTo:  splitExportTo(ks.Annotations["networking.istio.io/exportTo"]),
		Kind:      "Service",
		Name:      ks.Name,
		created:   ks.CreationTimestamp,
		uid:       ks.UID,
		Addresses: virtualIPs(ks.Spec.ClusterIPs),
	}
	byName := map[string]uint32{}
	for _, p := range ks.Spec.Ports {
		if (p.Protocol != "" && p.Protocol != corev1.ProtocolTCP) || !validPort(p.Port) {
			continue
		}
		proto, ok := protos.detect(ptrString(p.AppProtocol), p.Name)
		if !ok {
			continue
		}
		svc.Ports = append(svc.Ports, Port{Number: uint32(p.Port), Name: p.Name, Protocol: proto})
		byName[p.Name] = uint32(p.Port)
	}
	if len(svc.Ports) == 0 {
		return nil
	}
	for _, s := range ss {
		svc.Endpoints = append(svc.Endpoints, sliceEndpoints(s, byName, pods, resolve)...)
	}
	return svc
}

// serviceMemo keeps the services kubeServices built, so the next build
// reuses a Service's when its Service, EndpointSlices and their Pods are
// the objects it was built from (a source hands unchanged objects over
// as they were) and the ApplicationProtocols are too. Rebuilding every
// service was most of an index build at 10,000 services. A nil memo
// keeps nothing.
type serviceMemo struct {
	mu     sync.Mutex // held from start to end
	protos []*v1alpha1.ApplicationProtocol
	domain string
	last   map[nsName]*memoService
	next   map[nsName]*memoService
}

// memoService is what one service was built from, and the service (nil:
// no MetaProtocol port).
type memoService struct {
	ks     *corev1.Service
	slices []*discoveryv1.EndpointSlice
	// pods are the Pods the slices' endpoints name, as they were found
	// (nil where none was).
	pods []*corev1.Pod
	svc  *Service
}

// start begins a build; the last one's services are dropped when the
// protocols or the domain differ.
func (m *serviceMemo) start(protos []*v1alpha1.ApplicationProtocol, domain string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	if !slices.Equal(m.protos, protos) || m.domain != domain {
		m.last = nil
	}
	m.protos, m.domain = slices.Clone(protos), domain
	m.next = make(map[nsName]*memoService, len(m.last))
}

func (m *serviceMemo) end() {
	if m != nil {
		m.last, m.next = m.next, nil
		m.mu.Unlock()
	}
}

func (m *serviceMemo) lookup(ks *corev1.Service, ss []*discoveryv1.EndpointSlice, pods map[nsName]*corev1.Pod) (*Service, bool) {
	if m == nil {
		return nil, false
	}
	e := m.last[nsName{ks.Namespace, ks.Name}]
	if e == nil || e.ks != ks || !slices.Equal(e.slices, ss) || !slices.Equal(e.pods, podsOf(ss, pods)) {
		return nil, false
	}
	m.next[nsName{ks.Namespace, ks.Name}] = e
	return e.svc, true
}

// keep remembers a service built now, unless a slice of it names
// addresses by DNS (those answers change without an object changing).
func (m *serviceMemo) keep(ks *corev1.Service, ss []*discoveryv1.EndpointSlice, pods map[nsName]*corev1.Pod, svc *Service) {
	if m == nil {
		return
	}
	for _, s := range ss {
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			return
		}
	}
	m.next[nsName{ks.Namespace, ks.Name}] = &memoService{ks: ks, slices: slices.Clone(ss), pods: podsOf(ss, pods), svc: svc}
}

// podsOf lists the Pods the endpoints of ss name, in order (nil where
// there is none).
func podsOf(ss []*discoveryv1.EndpointSlice, pods map[nsName]*corev1.Pod) []*corev1.Pod {
	var out []*corev1.Pod
	for _, s := range ss {
		for _, e := range s.Endpoints {
			if k, ok := podOf(s, e); ok {
				out = append(out, pods[k])
			}
		}
	}
	return out
}

// sliceEndpoints reads one EndpointSlice. The names of an FQDN slice are
// resolved here, like a DNS ServiceEntry's, so the proxy only sees
// addresses.
func sliceEndpoints(s *discoveryv1.EndpointSlice, byName map[string]uint32, pods map[nsName]*corev1.Pod, resolve Resolver) []Endpoint {
	ports := map[uint32]uint32{}
	for _, p := range s.Ports {
		if p.Port == nil || !validPort(*p.Port) {
			continue
		}
		if n, ok := byName[ptrString(p.Name)]; ok {
			ports[n] = uint32(*p.Port)
		}
	}
	if len(ports) == 0 {
		return nil
	}
	return sliceInstances(s, ports, pods, resolve)
}

// sliceInstances reads the ready endpoints of one EndpointSlice, each
// with ports (nil for the lazy fallback's, dialled at any port).
func sliceInstances(s *discoveryv1.EndpointSlice, ports map[uint32]uint32, pods map[nsName]*corev1.Pod, resolve Resolver) []Endpoint {
	base := map[string]string{}
	for k, v := range s.Labels {
		if !strings.Contains(k, "kubernetes.io/") {
			base[k] = v
		}
	}
	var out []Endpoint
	for _, e := range s.Endpoints {
		if len(e.Addresses) == 0 || (e.Conditions.Ready != nil && !*e.Conditions.Ready) {
			continue
		}
		lbls := maps.Clone(base)
		sa, workload, wns := "", "", s.Namespace
		if k, ok := podOf(s, e); ok {
			if pod := pods[k]; pod != nil {
				maps.Copy(lbls, pod.Labels)
				sa = k.ns + "/" + podServiceAccount(pod)
				workload, wns = podWorkload(pod), k.ns
			}
		}
		addrs := e.Addresses[:1]
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			got, err := resolve(context.Background(), e.Addresses[0])
			if err != nil {
				continue
			}
			sort.Strings(got)
			addrs = got
		}
		for _, a := range addrs {
			out = append(out, Endpoint{Address: a, Ports: ports, Labels: lbls, ServiceAccount: sa, Workload: workload, Namespace: wns})
		}
	}
	return out
}

// podWorkload is the name Istio gives a Pod's workload: its controller's
// name, with a ReplicaSet's pod-template-hash suffix taken off (the
// Deployment's name), a Job's CronJob suffix kept; the Pod's own name
// without a controller.
func podWorkload(p *corev1.Pod) string {
	for _, ref := range p.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		if ref.Kind == "ReplicaSet" {
			if h := p.Labels["pod-template-hash"]; h != "" {
				if name, ok := strings.CutSuffix(ref.Name, "-"+h); ok {
					return name
				}
			}
		}
		return ref.Name
	}
	return p.Name
}

// podServiceAccount is the Pod's service account; Kubernetes sets
// "default" when the Pod names none, and a Pod from the folder source may
// not have been through that defaulting.
func podServiceAccount(p *corev1.Pod) string {
	if p.Spec.ServiceAccountName != "" {
		return p.Spec.ServiceAccountName
	}
	return "default"
}

// Resolver looks host names up, for ServiceEntries resolved by DNS.
type Resolver func(ctx context.Context, host string) ([]string, error)

// DefaultResolver asks the system resolver, one second at most. It
// returns the IPv4 addresses when there are any ("localhost" would
// otherwise also give ::1, where an IPv4-only server is not listening),
// else the IPv6 ones.
func DefaultResolver(ctx context.Context, host string) ([]string, error) {
	if net.ParseIP(host) != nil {
		return []string{host}, nil
	}
	// RFC 6761: names under "localhost." are loopback, whatever the
	// resolver says (EndpointSlices need a dotted name, so
	// "providers.localhost" is how a test names local providers).
	if h := strings.TrimSuffix(strings.ToLower(host), "."); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return []string{"127.0.0.1"}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	var v4, v6 []string
	for _, ip := range ips {
		if ip.To4() != nil {
			v4 = append(v4, ip.String())
		} else {
			v6 = append(v6, ip.String())
		}
	}
	if len(v4) > 0 {
		return v4, nil
	}
	return v6, nil
}

// entryServices builds MetaProtocol services from ServiceEntries: their
// inline endpoints, the WorkloadEntries their workloadSelector picks, or,
// for DNS resolution without endpoints, the host itself. Names are
// resolved here, so the proxy only ever sees addresses.
func entryServices(in *Inputs, protos protocols, resolve Resolver) []*Service {
	var out []*Service
	for _, se := range in.ServiceEntries {
		spec := &se.Spec
		var ports []Port
		targets := map[string]uint32{}
		for _, p := range spec.GetPorts() {
			proto, ok := protos.detect(seAppProtocol(p.GetProtocol()), p.GetName())
			if !ok || !validPort(p.GetNumber()) || (p.GetTargetPort() != 0 && !validPort(p.GetTargetPort())) {
				continue
			}
			ports = append(ports, Port{Number: p.GetNumber(), Name: p.GetName(), Protocol: proto})
			if t := p.GetTargetPort(); t != 0 {
				targets[p.GetName()] = t
			}
		}
		if len(ports) == 0 {
			continue
		}
		wes := spec.GetEndpoints()
		if sel := spec.GetWorkloadSelector(); sel != nil {
			wes = selectWorkloadEntries(in.WorkloadEntries, se.Namespace, sel.GetLabels())
		}
		dns := spec.GetResolution() == v1alpha3.ServiceEntry_DNS || spec.GetResolution() == v1alpha3.ServiceEntry_DNS_ROUND_ROBIN
		for _, host := range spec.GetHosts() {
			svc := &Service{Host: host, Namespace: se.Namespace, Ports: ports, ExportTo: spec.GetExportTo(),
				Kind: "ServiceEntry", Name: se.Name, SubjectAltNames: spec.GetSubjectAltNames(), created: se.CreationTimestamp,
				Addresses: virtualIPs(spec.GetAddresses())}
			list := wes
			if dns && len(list) == 0 {
				list = []*v1alpha3.WorkloadEntry{{Address: host}}
			}
			for _, we := range list {
				svc.Endpoints = append(svc.Endpoints, workloadEndpoints(we, se.Namespace, ports, targets, dns, resolve)...)
			}
			out = append(out, svc)
		}
	}
	return out
}

// seAppProtocol turns a ServiceEntry port protocol into an appProtocol
// hint; Istio's own protocols (TCP, HTTP, ...) say nothing about ours.
func seAppProtocol(p string) string {
	switch strings.ToUpper(p) {
	case "", "TCP", "HTTP", "HTTP2", "HTTPS", "GRPC", "TLS", "MONGO", "UDP":
		return ""
	}
	return p
}

func selectWorkloadEntries(all []*networkingv1.WorkloadEntry, ns string, sel map[string]string) []*v1alpha3.WorkloadEntry {
	var out []*v1alpha3.WorkloadEntry
	sortByName(all)
	for _, we := range all {
		if we.Namespace == ns && labels.SelectorFromSet(sel).Matches(labels.Set(we.Spec.GetLabels())) {
			out = append(out, &we.Spec)
		}
	}
	return out
}

// workloadEndpoints reads a WorkloadEntry (or a ServiceEntry's inline
// endpoint) of namespace ns.
func workloadEndpoints(we *v1alpha3.WorkloadEntry, ns string, ports []Port, targets map[string]uint32, dns bool, resolve Resolver) []Endpoint {
	if len(badPortNames(we.GetPorts())) > 0 {
		return nil
	}
	addrs := []string{we.GetAddress()}
	if dns && net.ParseIP(we.GetAddress()) == nil && resolve != nil {
		got, err := resolve(context.Background(), we.GetAddress())
		if err != nil {
			return nil
		}
		addrs = got
	}
	pm := map[uint32]uint32{}
	for _, p := range ports {
		n := p.Number
		if t, ok := targets[p.Name]; ok {
			n = t
		}
		if t, ok := we.GetPorts()[p.Name]; ok {
			n = t
		}
		pm[p.Number] = n
	}
	sa := ""
	if n := we.GetServiceAccount(); n != "" {
		sa = ns + "/" + n
	}
	out := make([]Endpoint, 0, len(addrs))
	sort.Strings(addrs)
	for _, a := range addrs {
		if a == "" {
			continue
		}
		out = append(out, Endpoint{Address: a, Ports: pm, Labels: we.GetLabels(), ServiceAccount: sa, Namespace: ns})
	}
	return out
}

// virtualIPs keeps the plain IPs of a list of addresses (not "None", not
// CIDR ranges).
func virtualIPs(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		if net.ParseIP(a) != nil {
			out = append(out, a)
		}
	}
	return out
}

func splitExportTo(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// visibleTo reports whether exportTo (of an object in namespace ns) lets
// a proxy in namespace proxyNS see it.
func visibleTo(exportTo []string, ns, proxyNS string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		switch e {
		case "*":
			return true
		case ".":
			if ns == proxyNS {
				return true
			}
		case "~":
		default:
			if e == proxyNS {
				return true
			}
		}
	}
	return false
}

type object interface {
	GetCreationTimestamp() metav1.Time
	GetNamespace() string
	GetName() string
}

// sortByAge orders objects oldest first, then by namespace and name, the
// order in which conflicts are settled. Each object's age and key are
// read once, not at every comparison: at 10,000 objects, reading them
// from objects spread over the heap was most of the sort.
func sortByAge[T object](list []T) {
	type sortKey struct {
		created  metav1.Time
		ns, name string
		i        int
	}
	keys := make([]sortKey, len(list))
	for i, o := range list {
		keys[i] = sortKey{o.GetCreationTimestamp(), o.GetNamespace(), o.GetName(), i}
	}
	slices.SortFunc(keys, func(a, b sortKey) int {
		if !a.created.Equal(&b.created) {
			if a.created.Before(&b.created) {
				return -1
			}
			return 1
		}
		if c := compareNsName(a.ns, a.name, b.ns, b.name); c != 0 {
			return c
		}
		return a.i - b.i // stable
	})
	sorted := make([]T, len(list))
	for j, k := range keys {
		sorted[j] = list[k.i]
	}
	copy(list, sorted)
}

func sortByName[T object](list []T) {
	slices.SortStableFunc(list, func(a, b T) int { return compareKeys(a, b) })
}

// compareKeys compares the keys of a and b ("namespace/name") as strings,
// without making them: sorting thousands of objects by their keys made
// two strings per comparison.
func compareKeys(a, b object) int {
	return compareNsName(a.GetNamespace(), a.GetName(), b.GetNamespace(), b.GetName())
}

// compareNsName compares "an/a" with "bn/b" as strings.
func compareNsName(an, a, bn, b string) int {
	if an == bn {
		return strings.Compare(a, b)
	}
	n := min(len(an), len(bn))
	if c := strings.Compare(an[:n], bn[:n]); c != 0 {
		return c
	}
	// One namespace starts the other: the shorter key has its '/' where
	// the longer has a namespace byte, unless that byte is a '/' too.
	if len(an) < len(bn) && bn[n] != '/' {
		return cmpByte('/', bn[n])
	}
	if len(bn) < len(an) && an[n] != '/' {
		return cmpByte(an[n], '/')
	}
	return strings.Compare(an+"/"+a, bn+"/"+b)
}

func cmpByte(a, b byte) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func key(o object) string { return o.GetNamespace() + "/" + o.GetName() }

// nsName is an object's namespace and name, as a map key that needs no
// string made.
type nsName struct{ ns, name string }

// podOf is the Pod an endpoint of slice s names, by namespace (the
// slice's when the reference gives none) and name.
func podOf(s *discoveryv1.EndpointSlice, e discoveryv1.Endpoint) (nsName, bool) {
	ref := e.TargetRef
	if ref == nil || ref.Kind != "Pod" {
		return nsName{}, false
	}
	ns := ref.Namespace
	if ns == "" {
		ns = s.Namespace
	}
	return nsName{ns, ref.Name}, true
}
