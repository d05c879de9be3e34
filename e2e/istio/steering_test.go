package istio

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// Steering meshed callers to the Rosetta waypoint with stock Istio
// (docs/mesh-integration.md): a Service or Namespace labelled
// metaprotocol.rosetta.dev/use-waypoint gets a VirtualService from the
// controller; istiod turns it into the callers' outbound config, seen here
// by stand-in sidecars (sidecar_test.go) connected to istiod's xDS.

const (
	useWaypointLabel = "metaprotocol.rosetta.dev/use-waypoint"
	// steeringWaypoint is the waypoint's Service and its pods' app label.
	steeringWaypoint = "rosetta-waypoint"
	// dubboPort is Dubbo's default port, shared by the services here.
	dubboPort = 20880
)

// steeringMesh is a namespace with a Rosetta waypoint (its Service, a
// Ready Pod, and rosetta-proxy labelled as that Pod), the controller, and
// a caller pod's stand-in sidecar.
type steeringMesh struct {
	ns       string
	ctrl     *kubeenv.Controller
	waypoint *waypoint
	caller   *standInSidecar
	// waypointSidecar stands in for the waypoint pod's own sidecar.
	waypointSidecar *standInSidecar
}

// setupSteering builds a steeringMesh in ns; the waypoint listens on
// listenIP.
func setupSteering(t *testing.T, c *kubeenv.Cluster, m *istiod, ns, listenIP string) *steeringMesh {
	t.Helper()
	c.MustNamespace(t, ns)
	scopeToNamespace(t, c, ns)
	wpIP := nextPodIP()
	createWorkload(t, c, workload{Namespace: ns, Name: steeringWaypoint, ServiceAccount: steeringWaypoint, IP: wpIP,
		Ports: []kubeenv.Port{{Name: "tcp-status", Port: 15021, TargetPort: 15021}}})
	callerIP := nextPodIP()
	c.ServiceAccount(t, ns, "frontend")
	c.CreatePod(t, kubeenv.Pod{Namespace: ns, Name: "frontend", ServiceAccount: "frontend", IP: callerIP, Labels: map[string]string{"app": "frontend"}})
	ctrl := startController(t, c)
	_, proxyBin := rosettaBinaries(t, c)
	admin := c.StartProxy(t, proxyBin, ctrl.XDSAddr, ns+"-waypoint", ns, "--listen-address="+listenIP, "--labels=app="+steeringWaypoint)
	return &steeringMesh{
		ns: ns, ctrl: ctrl,
		waypoint: &waypoint{Admin: admin, ListenIP: listenIP, name: ns + "-waypoint"},
		caller: startStandInSidecar(t, m, sidecarNode{Namespace: ns, Pod: "frontend", IP: callerIP, ServiceAccount: "frontend",
			Labels: map[string]string{"app": "frontend"}}),
		waypointSidecar: startStandInSidecar(t, m, sidecarNode{Namespace: ns, Pod: steeringWaypoint, IP: wpIP, ServiceAccount: steeringWaypoint,
			Labels: map[string]string{"app": steeringWaypoint}}),
	}
}

// startDubboService starts a dubbo-go provider named svc and publishes it
// as Service svc on port, reached through an FQDN EndpointSlice (the API
// server refuses loopback IPv4 endpoints; istiod does not need them for a
// caller's outbound config). It returns the Service's ClusterIP.
func startDubboService(t *testing.T, c *kubeenv.Cluster, ns, svc string, port int, labels map[string]string) string {
	t.Helper()
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: svc, Version: dubboVersion})
	c.CreateService(t, kubeenv.Service{Namespace: ns, Name: svc, Labels: labels,
		Ports: []kubeenv.Port{{Name: "tcp-dubbo", Port: port, TargetPort: p.Port()}}})
	c.CreateEndpointSlice(t, kubeenv.EndpointSlice{Namespace: ns, Name: svc, Service: svc, AddressType: "FQDN",
		Ports: []kubeenv.Port{{Name: "tcp-dubbo", Port: p.Port()}}, Endpoints: []kubeenv.Endpoint{{Address: "providers.localhost"}}})
	return strings.TrimSpace(c.MustKubectl(t, "", "get", "service", svc, "-n", ns, "-o", "jsonpath={.spec.clusterIP}"))
}

// host is a Service's host name.
func host(ns, svc string) string { return fmt.Sprintf("%s.%s.svc.cluster.local", svc, ns) }

// outbound is the name Istio gives the cluster of a host's port.
func outbound(port int, host string) string { return fmt.Sprintf("outbound|%d||%s", port, host) }

// steeringPortOf reads the waypoint port from a cluster name that sends
// to the steering Service ("outbound|41003||rosetta-waypoint-steering...").
func steeringPortOf(t *testing.T, ns, cluster string) int {
	t.Helper()
	rest, ok := strings.CutPrefix(cluster, "outbound|")
	port, h, _ := strings.Cut(rest, "||")
	n, err := strconv.Atoi(port)
	if !ok || err != nil || h != host(ns, steeringWaypoint+"-steering") {
		t.Fatalf("cluster %q does not go to the waypoint's steering Service", cluster)
	}
	return n
}

// waitSteered waits until the caller's outbound config sends vip:port to
// the waypoint's steering Service, and returns the waypoint port.
func (s *steeringMesh) waitSteered(t *testing.T, vip string) int {
	t.Helper()
	var cluster string
	err := testutil.Poll(configWait, "the caller's connections to "+vip+" steered", func() (bool, error) {
		cluster = s.caller.outboundCluster(vip, dubboPort)
		return strings.Contains(cluster, steeringWaypoint+"-steering"), nil
	})
	if err != nil {
		t.Fatalf("%v; the cluster is %q", err, cluster)
	}
	return steeringPortOf(t, s.ns, cluster)
}

// conditions are a Service's status conditions by type: "Status Reason: Message".
func conditions(t *testing.T, c *kubeenv.Cluster, ns, svc string) map[string]string {
	t.Helper()
	out := c.MustKubectl(t, "", "get", "service", svc, "-n", ns, "-o", "jsonpath={.status.conditions}")
	var conds []struct{ Type, Status, Reason, Message string }
	if strings.TrimSpace(out) != "" {
		if err := json.Unmarshal([]byte(out), &conds); err != nil {
			t.Fatalf("conditions of %s/%s: %v: %s", ns, svc, err, out)
		}
	}
	m := map[string]string{}
	for _, c := range conds {
		m[strings.TrimPrefix(c.Type, "metaprotocol.rosetta.dev/")] = c.Status + " " + c.Reason + ": " + c.Message
	}
	return m
}

// waitCondition waits until a Service's condition typ starts with want
// ("" for absent).
func waitCondition(t *testing.T, c *kubeenv.Cluster, ns, svc, typ, want string) {
	t.Helper()
	var last map[string]string
	err := testutil.Poll(configWait, fmt.Sprintf("%s/%s %s %q", ns, svc, typ, want), func() (bool, error) {
		last = conditions(t, c, ns, svc)
		got, ok := last[typ]
		if want == "" {
			return !ok, nil
		}
		return strings.HasPrefix(got, want), nil
	})
	if err != nil {
		t.Fatalf("%v; conditions %v", err, last)
	}
}

// exists reports whether kubectl finds the object.
func exists(c *kubeenv.Cluster, kind, ns, name string) bool {
	_, err := c.Kubectl("", "get", kind, name, "-n", ns)
	return err == nil
}

func waitGone(t *testing.T, c *kubeenv.Cluster, kind, ns, name string) {
	t.Helper()
	if err := testutil.Poll(configWait, kind+" "+ns+"/"+name+" deleted", func() (bool, error) { return !exists(c, kind, ns, name), nil }); err != nil {
		t.Fatal(err)
	}
}

// callThrough makes a dubbo-go call to the waypoint's port and wants the
// answer of provider svc.
func (s *steeringMesh) callThrough(t *testing.T, port int, svc string) {
	t.Helper()
	addr := s.waypoint.addr(port)
	testutil.WaitDialable(t, addr)
	consumer := dubbokit.NewConsumer(t, addr, dubbokit.ConsumerConfig{Version: dubboVersion, Timeout: callTimeout})
	want := svc + ": hello x"
	if got, err := consumer.SayHello(context.Background(), "x"); err != nil || got != want {
		t.Fatalf("sayHello through waypoint port %d = %q, %v; want %q", port, got, err, want)
	}
}

// TestSteeringIstiodView: what istiod tells callers once a Service opts in,
// and after it opts out; the waypoint is never steered to itself; a user's
// VirtualService for a host is left alone and the conflict is reported.
func TestSteeringIstiodView(t *testing.T) {
	c, m := needMesh(t)
	const ns = "steer"
	s := setupSteering(t, c, m, ns, "127.0.0.31")
	vip := startDubboService(t, c, ns, "greeter", dubboPort, nil)
	s.caller.waitOutboundCluster(t, vip, dubboPort, outbound(dubboPort, host(ns, "greeter")))

	start := time.Now()
	c.MustKubectl(t, "", "label", "service", "greeter", "-n", ns, useWaypointLabel+"="+steeringWaypoint)
	port := s.waitSteered(t, vip)
	t.Logf("label to the caller's config steered: %v; waypoint port %d", time.Since(start).Round(time.Millisecond), port)
	s.waypointSidecar.waitOutboundCluster(t, vip, dubboPort, outbound(dubboPort, host(ns, "greeter")))
	waitCondition(t, c, ns, "greeter", "Steered", "True Steered")
	if got := c.MustKubectl(t, "", "get", "virtualservice", "rosetta-steering-greeter", "-n", ns, "-o", "jsonpath={.metadata.labels}"); !strings.Contains(got, `"app.kubernetes.io/managed-by":"rosetta-controller"`) {
		t.Errorf("the steering VirtualService's labels: %s", got)
	}
	s.callThrough(t, port, "greeter")

	t.Run("an edit of the owned VirtualService is put back", func(t *testing.T) {
		c.MustKubectl(t, "", "patch", "virtualservice", "rosetta-steering-greeter", "-n", ns, "--type=json",
			"-p", `[{"op": "replace", "path": "/spec/tcp/1/route/0/destination/port/number", "value": 41999}]`)
		if got := s.waitSteered(t, vip); got != port {
			t.Errorf("after the edit the caller is steered to waypoint port %d, want %d", got, port)
		}
		err := testutil.Poll(configWait, "the VirtualService put back", func() (bool, error) {
			out := c.MustKubectl(t, "", "get", "virtualservice", "rosetta-steering-greeter", "-n", ns, "-o", "jsonpath={.spec.tcp[1].route[0].destination.port.number}")
			return strings.TrimSpace(out) == strconv.Itoa(port), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		s.caller.waitOutboundCluster(t, vip, dubboPort, outbound(port, host(ns, steeringWaypoint+"-steering")))
	})

	t.Run("a user's VirtualService is left alone", func(t *testing.T) {
		billingVIP := startDubboService(t, c, ns, "billing", dubboPort+1, nil)
		c.Apply(t, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mine, namespace: %s}
spec:
  hosts: [billing]
  tcp: [{route: [{destination: {host: billing, port: {number: %d}}}]}]
`, ns, dubboPort+1))
		before := c.MustKubectl(t, "", "get", "virtualservice", "mine", "-n", ns, "-o", "jsonpath={.metadata.resourceVersion}")
		c.MustKubectl(t, "", "label", "service", "billing", "-n", ns, useWaypointLabel+"="+steeringWaypoint)
		waitCondition(t, c, ns, "billing", "Steered", "False ConflictingVirtualService: VirtualService steer/mine")
		if exists(c, "virtualservice", ns, "rosetta-steering-billing") {
			t.Error("the controller wrote a VirtualService for billing beside the user's")
		}
		if after := c.MustKubectl(t, "", "get", "virtualservice", "mine", "-n", ns, "-o", "jsonpath={.metadata.resourceVersion}"); after != before {
			t.Errorf("the user's VirtualService changed: resourceVersion %s -> %s", before, after)
		}
		s.caller.waitOutboundCluster(t, billingVIP, dubboPort+1, outbound(dubboPort+1, host(ns, "billing")))
		metrics := httpGet(t, "http://"+s.ctrl.HTTPAddr+"/metrics")
		if v := metricValue(metrics, `rosetta_controller_unsteered_services{reason="ConflictingVirtualService"}`); v != 1 {
			t.Errorf("rosetta_controller_unsteered_services{reason=ConflictingVirtualService} = %v, want 1", v)
		}
	})

	t.Run("opting out restores the direct route", func(t *testing.T) {
		c.MustKubectl(t, "", "label", "service", "greeter", "-n", ns, useWaypointLabel+"-")
		s.caller.waitOutboundCluster(t, vip, dubboPort, outbound(dubboPort, host(ns, "greeter")))
		waitGone(t, c, "virtualservice", ns, "rosetta-steering-greeter")
		waitGone(t, c, "service", ns, steeringWaypoint+"-steering")
		waitCondition(t, c, ns, "greeter", "Steered", "")
	})
}

// TestSharedPortSteered: 20 Dubbo services on port 20880 in one namespace.
// Unsteered, the waypoint serves the oldest on 20880 and the others say so
// in their status; once the namespace opts in, each caller's connection to
// a service, sent where istiod's config for the caller says, lands on that
// service.
func TestSharedPortSteered(t *testing.T) {
	c, m := needMesh(t)
	const ns, services = "shared", 20
	s := setupSteering(t, c, m, ns, "127.0.0.32")
	vips := make([]string, services)
	name := func(i int) string { return fmt.Sprintf("svc-%02d", i) }
	for i := range services {
		vips[i] = startDubboService(t, c, ns, name(i), dubboPort, nil)
	}
	conflicts := 0
	err := testutil.Poll(configWait, "19 PortConflict conditions", func() (bool, error) {
		conflicts = 0
		for i := range services {
			if strings.HasPrefix(conditions(t, c, ns, name(i))["PortConflict"], "True PortInUse") {
				conflicts++
			}
		}
		return conflicts == services-1, nil
	})
	if err != nil {
		t.Fatalf("%v: %d", err, conflicts)
	}

	c.MustKubectl(t, "", "label", "namespace", ns, useWaypointLabel+"="+steeringWaypoint)
	seen := map[int]string{}
	for i := range services {
		port := s.waitSteered(t, vips[i])
		if other, dup := seen[port]; dup {
			t.Fatalf("%s and %s are both steered to waypoint port %d", other, name(i), port)
		}
		seen[port] = name(i)
		s.callThrough(t, port, name(i))
		waitCondition(t, c, ns, name(i), "PortConflict", "")
	}
	s.waypointSidecar.waitOutboundCluster(t, vips[0], dubboPort, outbound(dubboPort, host(ns, name(0))))
}
