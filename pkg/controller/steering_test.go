package controller

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// dubboService is a Service of namespace shop with a Dubbo port, created
// on the given day of January (older wins a shared port).
func dubboService(name string, port, day int, labels string) string {
	return fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: %s, namespace: shop, uid: uid-%s, creationTimestamp: "2026-01-%02dT00:00:00Z", labels: {%s}}
spec: {ports: [{name: tcp-dubbo, port: %d}]}
`, name, name, day, labels, port)
}

// waypointService is the Service of the waypoint in namespace mesh.
const waypointService = `---
apiVersion: v1
kind: Service
metadata: {name: rosetta-waypoint, namespace: mesh, uid: uid-waypoint}
spec: {selector: {app: rosetta-waypoint}, ports: [{name: status, port: 15021}]}
`

// steeredNamespace opts namespace shop in to mesh/rosetta-waypoint.
const steeredNamespace = `---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {metaprotocol.rosetta.dev/use-waypoint: rosetta-waypoint, metaprotocol.rosetta.dev/use-waypoint-namespace: mesh}}
`

func buildSteering(t *testing.T, docs ...string) *Index {
	t.Helper()
	in := &Inputs{}
	if err := in.AddYAML([]byte(strings.Join(docs, ""))); err != nil {
		t.Fatal(err)
	}
	return (&Builder{Options: Options{SteeringPorts: PortRange{First: 41000, Last: 41999}}}).Build(in)
}

// conditionsOf renders a Service's conditions as "Type=Status Reason".
func conditionsOf(ix *Index, svc string) []string {
	var out []string
	for _, c := range ix.ServiceConditions()["shop/"+svc] {
		out = append(out, fmt.Sprintf("%s=%s %s", strings.TrimPrefix(c.Type, conditionPrefix), c.Status, c.Reason))
	}
	return out
}

func listenerPorts(res *config.Resources) map[string]uint32 {
	out := map[string]uint32{}
	for _, l := range res.Listeners {
		out[l.Name] = l.GetAddress().GetSocketAddress().GetPortValue()
	}
	return out
}

var waypointProxy = &Proxy{ID: "w", Namespace: "mesh", Labels: map[string]string{"app": "rosetta-waypoint"}, Mode: ModeGateway}

// TestSteeringSharedPort: three services on 20880 in a namespace opted in
// get a steering port each; the waypoint serves each on its own port with
// the service's routes, and the VirtualServices send callers there, except
// the waypoint's own connections.
func TestSteeringSharedPort(t *testing.T) {
	ix := buildSteering(t, waypointService, steeredNamespace,
		dubboService("a", 20880, 3, ""), dubboService("b", 20880, 1, ""), dubboService("c", 20880, 2, ""))
	host := func(s string) string { return s + ".shop.svc.cluster.local" }
	want := []SteeredPort{{host("a"), 20880, 41000}, {host("b"), 20880, 41001}, {host("c"), 20880, 41002}}
	if got := ix.SteeredPorts("mesh", "rosetta-waypoint"); !slices.Equal(got, want) {
		t.Fatalf("steered ports %v, want %v", got, want)
	}
	for _, s := range []string{"a", "b", "c"} {
		if got := conditionsOf(ix, s); !slices.Equal(got, []string{"Steered=True Steered"}) {
			t.Errorf("%s: %v; a steered service has no port conflict", s, got)
		}
	}
	ports := listenerPorts(ix.Generate(waypointProxy))
	wantPorts := map[string]uint32{
		host("b") + "_20880":                   20880, // the oldest keeps the number
		SteeringListenerName(host("a"), 20880): 41000,
		SteeringListenerName(host("b"), 20880): 41001,
		SteeringListenerName(host("c"), 20880): 41002,
	}
	if fmt.Sprint(ports) != fmt.Sprint(wantPorts) {
		t.Fatalf("waypoint listeners %v, want %v", ports, wantPorts)
	}
	res := ix.Generate(waypointProxy)
	for _, s := range []string{"a", "c"} {
		mpp := listenerProxy(t, res, SteeringListenerName(host(s), 20880))
		if mpp.RouteConfigName != ListenerName(host(s), 20880) {
			t.Errorf("%s: steering listener serves %s", s, mpp.RouteConfigName)
		}
	}
	if got := listenerPorts(ix.Generate(&Proxy{ID: "caller", Namespace: "shop"})); len(got) != 1 {
		t.Errorf("a proxy that is not the waypoint got %v", got)
	}

	owned := ix.Owned()
	if len(owned.Services) != 1 || owned.Services[0].Name != "rosetta-waypoint-steering" || owned.Services[0].Namespace != "mesh" {
		t.Fatalf("steering Services %+v", owned.Services)
	}
	svc := owned.Services[0]
	if len(svc.Spec.Ports) != 3 || svc.Spec.Ports[1].Port != 41001 || svc.Spec.Ports[1].Name != steeringPortName(host("b"), 20880) ||
		svc.Spec.Selector["app"] != "rosetta-waypoint" || svc.OwnerReferences[0].UID != "uid-waypoint" {
		t.Errorf("steering Service %+v", svc)
	}
	if len(owned.VirtualServices) != 3 {
		t.Fatalf("VirtualServices %+v", owned.VirtualServices)
	}
	vs := owned.VirtualServices[1]
	js, _ := json.Marshal(vs.Spec.Tcp)
	wantVS := `[{"match":[{"port":20880,"sourceLabels":{"app":"rosetta-waypoint"},"sourceNamespace":"mesh"}],"route":[{"destination":{"host":"b.shop.svc.cluster.local","port":{"number":20880}}}]},` +
		`{"match":[{"port":20880}],"route":[{"destination":{"host":"rosetta-waypoint-steering.mesh.svc.cluster.local","port":{"number":41001}}}]}]`
	if vs.Name != "rosetta-steering-b" || vs.Namespace != "shop" || string(js) != wantVS || vs.Spec.Hosts[0] != host("b") ||
		vs.Labels[ManagedByLabel] != ManagedBy || vs.OwnerReferences[0].UID != "uid-b" {
		t.Errorf("VirtualService %s/%s %v %s\nwant routes %s", vs.Namespace, vs.Name, vs.Spec.Hosts, js, wantVS)
	}
	// What is applied is the API's JSON (camelCase), with the hash.
	u, hash, err := applyObject(vs)
	if err != nil {
		t.Fatal(err)
	}
	applied, _ := json.Marshal(u.Object)
	if !strings.Contains(string(applied), `"sourceNamespace":"mesh"`) || u.GetAnnotations()[SpecHashAnnotation] != hash ||
		strings.Contains(string(applied), "creationTimestamp") || strings.Contains(string(applied), "status") {
		t.Errorf("apply body %s", applied)
	}
}

// TestSteeringKeepsPublishedPorts: a port the steering Service already
// publishes stays; new ports take the lowest free ones, skipping port
// numbers of MetaProtocol services.
func TestSteeringKeepsPublishedPorts(t *testing.T) {
	published := fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: rosetta-waypoint-steering, namespace: mesh, labels: {app.kubernetes.io/managed-by: rosetta-controller, metaprotocol.rosetta.dev/steering-of: rosetta-waypoint}}
spec: {selector: {app: rosetta-waypoint}, ports: [{name: %s, port: 41000}, {name: %s, port: 41003}]}
`, steeringPortName("gone.shop.svc.cluster.local", 20880), steeringPortName("b.shop.svc.cluster.local", 20880))
	ix := buildSteering(t, waypointService, steeredNamespace, published,
		dubboService("a", 20880, 1, ""), dubboService("b", 20880, 2, ""), dubboService("c", 41001, 3, ""))
	got := map[string]uint32{}
	for _, p := range ix.SteeredPorts("mesh", "rosetta-waypoint") {
		got[strings.TrimSuffix(p.Host, ".shop.svc.cluster.local")] = p.Steering
	}
	// b keeps 41003; a takes 41000 (gone is gone); c skips 41001, a
	// service port number.
	if want := map[string]uint32{"a": 41000, "b": 41003, "c": 41002}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("allocation %v, want %v", got, want)
	}
}

// TestSteeringRefusals: what keeps an opted-in Service from being steered
// is in its Steered condition, and nothing is written for it.
func TestSteeringRefusals(t *testing.T) {
	userVS := `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mine, namespace: shop}
spec: {hosts: [b], tcp: [{route: [{destination: {host: b}}]}]}
`
	gatewayVS := `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge, namespace: shop}
spec: {hosts: [c.shop.svc.cluster.local], gateways: [edge-gw], tcp: [{route: [{destination: {host: c}}]}]}
`
	ix := buildSteering(t, waypointService, steeredNamespace, userVS, gatewayVS,
		dubboService("a", 20880, 1, ""),
		dubboService("b", 20881, 1, ""),
		dubboService("c", 20882, 1, ""),
		dubboService("d", 20883, 1, "metaprotocol.rosetta.dev/use-waypoint: none"),
		dubboService("e", 20884, 1, "metaprotocol.rosetta.dev/use-waypoint: missing"))
	cases := map[string][]string{
		"a": {"Steered=True Steered"},
		"b": {"Steered=False ConflictingVirtualService"},
		"c": {"Steered=True Steered"}, // a Gateway's VirtualService does not route the mesh
		"d": nil,
		"e": {"Steered=False WaypointNotFound"},
	}
	for s, want := range cases {
		if got := conditionsOf(ix, s); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", s, got, want)
		}
	}
	var names []string
	for _, vs := range ix.Owned().VirtualServices {
		names = append(names, vs.Name)
	}
	if want := []string{"rosetta-steering-a", "rosetta-steering-c"}; !slices.Equal(names, want) {
		t.Errorf("VirtualServices %v, want %v", names, want)
	}

	small := &Builder{Options: Options{SteeringPorts: PortRange{First: 41000, Last: 41000}}}
	in := &Inputs{}
	if err := in.AddYAML([]byte(waypointService + steeredNamespace + dubboService("a", 20880, 1, "") + dubboService("b", 20881, 2, ""))); err != nil {
		t.Fatal(err)
	}
	ix = small.Build(in)
	if got := conditionsOf(ix, "b"); !slices.Equal(got, []string{"Steered=False NoSteeringPort"}) {
		t.Errorf("b with the range used up: %v", got)
	}
}

// TestPortConflictReported: without steering, services of a namespace
// that share a port number are served oldest first, and the others say so.
func TestPortConflictReported(t *testing.T) {
	in := &Inputs{}
	if err := in.AddYAML([]byte(dubboService("a", 20880, 2, "") + dubboService("b", 20880, 1, "") + dubboService("c", 20881, 3, ""))); err != nil {
		t.Fatal(err)
	}
	ix := (&Builder{}).Build(in)
	if got := conditionsOf(ix, "a"); !slices.Equal(got, []string{"PortConflict=True PortInUse"}) {
		t.Errorf("a: %v", got)
	}
	if msg := ix.ServiceConditions()["shop/a"][0].Message; !strings.Contains(msg, "older Service shop/b") {
		t.Errorf("a's message %q does not name b", msg)
	}
	for _, s := range []string{"b", "c"} {
		if got := conditionsOf(ix, s); got != nil {
			t.Errorf("%s: %v", s, got)
		}
	}
	ports := listenerPorts(ix.Generate(&Proxy{ID: "p", Namespace: "shop"}))
	if _, ok := ports["b.shop.svc.cluster.local_20880"]; !ok || len(ports) != 2 {
		t.Errorf("listeners %v: want b's on 20880 and c's", ports)
	}
	if ix.Owned().Services != nil || ix.Owned().VirtualServices != nil {
		t.Errorf("steering off wrote %+v", ix.Owned())
	}
}

// TestHBONEListeners: a proxy that terminates HBONE gets, for services
// that share a port number, the oldest's listener bound and the others'
// without an address, each listing its ClusterIP:port; other proxies get
// neither.
func TestHBONEListeners(t *testing.T) {
	withIP := func(doc, ip string) string {
		return strings.Replace(doc, "spec: {", "spec: {clusterIPs: ["+ip+"], ", 1)
	}
	in := &Inputs{}
	if err := in.AddYAML([]byte(withIP(dubboService("a", 20880, 1, ""), "10.96.0.1") + withIP(dubboService("b", 20880, 2, ""), "10.96.0.2"))); err != nil {
		t.Fatal(err)
	}
	ix := (&Builder{}).Build(in)
	res := ix.Generate(&Proxy{ID: "w", Namespace: "shop", HBONE: true})
	got := map[string]string{}
	for _, l := range res.Listeners {
		mpp := listenerProxy(t, res, l.Name)
		got[l.Name] = fmt.Sprintf("%d %v", l.GetAddress().GetSocketAddress().GetPortValue(), mpp.Authorities)
	}
	want := map[string]string{
		"a.shop.svc.cluster.local_20880": "20880 [10.96.0.1:20880]",
		"b.shop.svc.cluster.local_20880": "0 [10.96.0.2:20880]",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("HBONE proxy's listeners %v, want %v", got, want)
	}
	plain := ix.Generate(&Proxy{ID: "p", Namespace: "shop"})
	if len(plain.Listeners) != 1 || len(listenerProxy(t, plain, plain.Listeners[0].Name).Authorities) != 0 {
		t.Errorf("a proxy without HBONE got %v", listenerPorts(plain))
	}
}

// TestHBONEAuthoritiesAreUnique: two ServiceEntries with one address list
// it once, on the older one's listener (the proxy refuses a destination
// listed twice), and the younger, left with no destination and no port,
// gets no listener (the proxy refuses one without either).
func TestHBONEAuthoritiesAreUnique(t *testing.T) {
	se := func(name string, day int) string {
		return fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %s, namespace: shop, creationTimestamp: "2026-01-%02dT00:00:00Z"}
spec:
  hosts: [%s.example.com]
  addresses: [240.0.0.1]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
`, name, day, name)
	}
	in := &Inputs{}
	if err := in.AddYAML([]byte(se("young", 2) + se("old", 1))); err != nil {
		t.Fatal(err)
	}
	res := (&Builder{}).Build(in).Generate(&Proxy{ID: "w", Namespace: "shop", HBONE: true})
	got := map[string][]string{}
	for _, l := range res.Listeners {
		got[l.Name] = listenerProxy(t, res, l.Name).Authorities
	}
	if _, listed := got["young.example.com_20880"]; fmt.Sprint(got["old.example.com_20880"]) != "[240.0.0.1:20880]" || listed {
		t.Errorf("authorities %v", got)
	}
}
