package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
	"github.com/rosetta-mesh/rosetta/pkg/xds/xdstest"
	_ "github.com/rosetta-mesh/rosetta/protocols/dubbo" // registers the codec
	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
)

// recorder is the proxy's side of the test: it keeps what apply received
// and accept (when set) did not refuse.
type recorder struct {
	mu     sync.Mutex
	sets   []config.Resources
	at     []time.Time
	accept func(config.Resources) error
}

func (r *recorder) apply(res config.Resources) error {
	if r.accept != nil {
		if err := r.accept(res); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sets = append(r.sets, res)
	r.at = append(r.at, time.Now())
	return nil
}

func (r *recorder) last() (config.Resources, int, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sets) == 0 {
		return config.Resources{}, 0, time.Time{}
	}
	return r.sets[len(r.sets)-1], len(r.sets), r.at[len(r.at)-1]
}

func startProxyClient(t *testing.T, addr, id, ns string) *recorder {
	t.Helper()
	rec := &recorder{}
	runClient(t, client.Options{Address: addr, NodeID: id, Namespace: ns}, rec)
	return rec
}

// realProxy is an in-process proxy (pkg/proxy) fed by the xDS client:
// rec keeps the sets it accepted, received every response the client got.
type realProxy struct {
	px       *proxy.Proxy
	rec      *recorder
	received *xdstest.Received
}

func startRealProxy(t *testing.T, addr, id, ns string) *realProxy {
	t.Helper()
	p := &realProxy{px: proxy.New(slog.New(slog.NewTextHandler(io.Discard, nil))), received: &xdstest.Received{}}
	t.Cleanup(func() { _ = p.px.Shutdown(context.Background()) })
	p.rec = &recorder{accept: p.px.Apply}
	runClient(t, client.Options{Address: addr, NodeID: id, Namespace: ns,
		DialOptions: []grpc.DialOption{p.received.DialOption()}}, p.rec)
	return p
}

// runClient runs the xDS client with opts (listening on 127.0.0.1, short
// backoffs), handing each set to rec, until t ends.
func runClient(t *testing.T, opts client.Options, rec *recorder) {
	t.Helper()
	opts.ListenAddress, opts.Logger = "127.0.0.1", slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.InitialBackoff, opts.MaxBackoff = 50*time.Millisecond, 500*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- client.Run(ctx, opts, rec.apply) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("client.Run: %v", err)
		}
	})
}

// routeFor returns where the first route matching method goes: a cluster,
// or "c1:w1,c2:w2" for a split.
func routeFor(res config.Resources, listener, method string) string {
	for _, rc := range res.Routes {
		if rc.GetName() != listener {
			continue
		}
		for _, r := range rc.GetRoutes() {
			ok := true
			for _, a := range r.GetMatch().GetAttributes() {
				if a.GetName() == "method" && a.GetExact() != "" && a.GetExact() != method {
					ok = false
				}
			}
			if !ok {
				continue
			}
			if c := r.GetRoute().GetCluster(); c != "" {
				return c
			}
			var parts []string
			for _, w := range r.GetRoute().GetWeightedClusters().GetClusters() {
				parts = append(parts, fmt.Sprintf("%s:%d", w.GetName(), w.GetWeight()))
			}
			return strings.Join(parts, ",")
		}
	}
	return ""
}

func listenerNames(res config.Resources) []string {
	var out []string
	for _, l := range res.Listeners {
		out = append(out, l.GetName())
	}
	return out
}

// greeterMesh is the greeter service on port, its subsets v1 and v2 on
// the ports of two providers. The API server refuses loopback addresses
// in IPv4 EndpointSlices, so the providers are published as FQDN slices
// ("providers.localhost", loopback by RFC 6761), which the controller
// resolves. The Sidecar keeps the demo proxy to demo's services, so that
// it binds no other test's ports.
func greeterMesh(port, v1, v2 int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: demo}
spec:
  ports: [{name: tcp-dubbo-greeter, port: %d, targetPort: 20880}]
---
%s---
%s---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: demo}
spec:
  host: greeter.demo.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: demo}
spec:
  egress: [{hosts: ["./*"]}]
`, port, greeterSlice("v1", v1), greeterSlice("v2", v2))
}

// greeterSlice is the EndpointSlice of one greeter subset, on port.
func greeterSlice(subset string, port int) string {
	return fmt.Sprintf(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter-%[1]s
  namespace: demo
  labels: {kubernetes.io/service-name: greeter, endpointslice.kubernetes.io/managed-by: e2e, version: %[1]s}
addressType: FQDN
ports: [{name: tcp-dubbo-greeter, port: %[2]d}]
endpoints: [{addresses: [providers.localhost]}]
`, subset, port)
}

// farewellMesh is a second service in demo, on port, served by the
// provider on upstream.
func farewellMesh(port, upstream int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: farewell, namespace: demo}
spec:
  ports: [{name: tcp-dubbo, port: %d}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: farewell
  namespace: demo
  labels: {kubernetes.io/service-name: farewell, endpointslice.kubernetes.io/managed-by: e2e}
addressType: FQDN
ports: [{name: tcp-dubbo, port: %d}]
endpoints: [{addresses: [providers.localhost]}]
`, port, upstream)
}

// dubboProvider answers every call with its name.
func dubboProvider(t *testing.T, name string) *dubbopeer.Provider {
	t.Helper()
	p, err := dubbopeer.Serve("127.0.0.1:0", name, func(context.Context, *dubbopeer.Request) (any, error) { return name, nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// callAs calls method on a new connection to addr and returns the name of
// the provider that answered, or the call's error.
func callAs(addr, method string) string {
	c, err := dubbopeer.Dial(addr)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, _, err := c.Call(ctx, dubbopeer.Service{Interface: "org.example.Greeter"}, method, []any{"x"}, nil)
	if err != nil {
		return method + ": " + err.Error()
	}
	return fmt.Sprint(got)
}

// endpointPorts returns the ports of cluster's endpoints.
func endpointPorts(res config.Resources, cluster string) []uint32 {
	var out []uint32
	for _, cla := range res.Endpoints {
		if cla.GetClusterName() == cluster {
			for _, le := range cla.GetEndpoints() {
				for _, e := range le.GetLbEndpoints() {
					out = append(out, e.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue())
				}
			}
		}
	}
	return out
}

func greeterRouter(w1, w2 int, regex string) string {
	match := "method: {exact: sayHello}"
	if regex != "" {
		match = fmt.Sprintf("method: {regex: %q}", regex)
	}
	return fmt.Sprintf(`apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: greeter, namespace: demo}
spec:
  hosts: [greeter.demo.svc.cluster.local]
  routes:
  - name: say-hello
    match: {attributes: {%s}}
    route:
    - {destination: {host: greeter.demo.svc.cluster.local, subset: v1}, weight: %d}
    - {destination: {host: greeter.demo.svc.cluster.local, subset: v2}, weight: %d}
  - name: rest
    route: [{destination: {host: greeter.demo.svc.cluster.local, subset: v1}}]
`, match, w1, w2)
}

type routerStatus struct {
	Status struct {
		ObservedGeneration int64 `json:"observedGeneration"`
		Conditions         []struct {
			Type, Status, Reason, Message string
		} `json:"conditions"`
	} `json:"status"`
	Metadata struct {
		Generation int64 `json:"generation"`
	} `json:"metadata"`
}

func accepted(t *testing.T, c *kubeenv.Cluster, ns, name string) (gen int64, status, reason, msg string) {
	t.Helper()
	out := c.MustKubectl(t, "", "get", "metarouter", name, "-n", ns, "-o", "json")
	var st routerStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	for _, cd := range st.Status.Conditions {
		if cd.Type == "Accepted" && st.Status.ObservedGeneration == st.Metadata.Generation {
			return st.Metadata.Generation, cd.Status, cd.Reason, cd.Message
		}
	}
	return st.Metadata.Generation, "", "", ""
}

// TestControlPlane runs the scenarios against the real API server,
// with the controller as a process holding the chart's ServiceAccount
// token and an in-process proxy fed by the xDS client, in front of real
// Dubbo providers.
func TestControlPlane(t *testing.T) {
	c := needCluster(t)
	v1, v2, v2b := dubboProvider(t, "v1"), dubboProvider(t, "v2"), dubboProvider(t, "v2b")
	port := testutil.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	greeterListener := fmt.Sprintf("greeter.demo.svc.cluster.local_%d", port)
	clusterV1 := fmt.Sprintf("outbound|%d|v1|greeter.demo.svc.cluster.local", port)
	clusterV2 := fmt.Sprintf("outbound|%d|v2|greeter.demo.svc.cluster.local", port)
	c.MustNamespace(t, "demo")
	c.MustKubectl(t, greeterMesh(port, portOf(t, v1.Addr()), portOf(t, v2.Addr())), "apply", "-f", "-")
	c.MustKubectl(t, greeterRouter(0, 100, ""), "apply", "-f", "-")
	ctrl := c.StartController(t, ctrlBin, "", "")
	demo := startRealProxy(t, ctrl.XDSAddr, "proxy-demo", "demo")
	rec := demo.rec
	parent := t // the restarted controller must outlive its subtest

	t.Run("1 route to a subset", func(t *testing.T) {
		testutil.Eventually(t, 10*time.Second, "sayHello to v2", func() bool {
			r, _, _ := rec.last()
			return routeFor(r, greeterListener, "sayHello") == clusterV1+":0,"+clusterV2+":100"
		})
		r, _, _ := rec.last()
		if got := routeFor(r, greeterListener, "other"); got != clusterV1 {
			t.Fatalf("other calls go to %s", got)
		}
		if got := callAs(addr, "sayHello"); got != "v2" {
			t.Fatalf("sayHello answered by %s", got)
		}
		if got := callAs(addr, "other"); got != "v1" {
			t.Fatalf("other answered by %s", got)
		}
		// Status is the leader's to write: a controller an earlier test
		// killed (TestChaos) holds the Lease until it expires, 15 s on.
		testutil.Eventually(t, 30*time.Second, "Accepted=True", func() bool { _, s, _, _ := accepted(t, c, "demo", "greeter"); return s == "True" })
	})

	t.Run("2 weights change within a second", func(t *testing.T) {
		c.MustKubectl(t, greeterRouter(20, 80, ""), "apply", "-f", "-")
		written := time.Now()
		testutil.Eventually(t, 5*time.Second, "20/80", func() bool {
			r, _, _ := rec.last()
			return routeFor(r, greeterListener, "sayHello") == clusterV1+":20,"+clusterV2+":80"
		})
		_, _, at := rec.last()
		if d := at.Sub(written); d > time.Second {
			t.Fatalf("the proxy applied the change %v after the write, want under 1s", d)
		}
		t.Logf("write to proxy apply: %v", at.Sub(written))
	})

	t.Run("3 an endpoint change sends endpoints only", func(t *testing.T) {
		// v2 moves to another provider: only its endpoints change. Once
		// the proxy holds them, the endpoints it received last carry the
		// change's version; every response of the earlier changes has a
		// smaller one.
		c.MustKubectl(t, greeterSlice("v2", portOf(t, v2b.Addr())), "apply", "-f", "-")
		testutil.Eventually(t, 10*time.Second, "v2's new endpoint", func() bool {
			r, _, _ := rec.last()
			ports := endpointPorts(r, clusterV2)
			return len(ports) == 1 && int(ports[0]) == portOf(t, v2b.Addr())
		})
		endpointsOnly := demo.received.Latest(config.EndpointType)
		// Then a change of all four types: a second service. The
		// controller keeps one request per type open, so a listener,
		// cluster or route set that the endpoint change (wrongly) sent
		// arrives before this one's.
		farewellPort := testutil.FreePort(t)
		farewell := fmt.Sprintf("outbound|%d||farewell.demo.svc.cluster.local", farewellPort)
		c.MustKubectl(t, farewellMesh(farewellPort, portOf(t, v1.Addr())), "apply", "-f", "-")
		testutil.Eventually(t, 10*time.Second, "the second service", func() bool {
			r, _, _ := rec.last()
			return len(r.Listeners) == 2 && len(r.Clusters) == 3 && len(r.Routes) == 2 && len(endpointPorts(r, farewell)) == 1
		})
		all := demo.received.Latest(config.ListenerType)
		if all <= endpointsOnly {
			t.Fatalf("the second change has version %d, the endpoint change %d", all, endpointsOnly)
		}
		// The endpoint change sent endpoints alone. The second change is
		// two objects: kubectl's first write is pushed at once (a change
		// after a quiet period is), the second perhaps apart, so each
		// type may come in one or two steps.
		for _, typ := range []string{config.ListenerType, config.ClusterType, config.RouteType} {
			checkSteps(t, typ, demo.received.Since(typ, endpointsOnly), endpointsOnly)
		}
		got := demo.received.Since(config.EndpointType, endpointsOnly)
		if len(got) == 0 || got[0] != endpointsOnly {
			t.Fatalf("endpoints: the proxy received versions %v, want the endpoint change's %d first", got, endpointsOnly)
		}
		checkSteps(t, config.EndpointType, got[1:], endpointsOnly)
		if got := callAs(fmt.Sprintf("127.0.0.1:%d", farewellPort), "bye"); got != "v1" {
			t.Fatalf("farewell answered by %s", got)
		}
	})

	t.Run("4 invalid MetaRouter keeps the previous route", func(t *testing.T) {
		// A regex CEL cannot check: the API server accepts it, the
		// controller refuses it in status and keeps generation N-1.
		_, applied, _ := rec.last()
		c.MustKubectl(t, greeterRouter(20, 80, "say(Hello"), "apply", "-f", "-")
		var msg string
		testutil.Eventually(t, 10*time.Second, "Accepted=False", func() bool {
			_, s, _, m := accepted(t, c, "demo", "greeter")
			msg = m
			return s == "False"
		})
		if !strings.Contains(msg, "spec.routes[0].match.attributes[method].regex") || !strings.Contains(msg, "stays in force") {
			t.Fatalf("status message does not name the field: %s", msg)
		}
		r, n, _ := rec.last()
		if n != applied || routeFor(r, greeterListener, "sayHello") != clusterV1+":20,"+clusterV2+":80" {
			t.Fatal("the invalid MetaRouter reached the proxy")
		}
		// And one the API server refuses outright.
		if out, err := c.Kubectl(greeterRouter(60, 60, ""), "apply", "-f", "-"); err == nil || !strings.Contains(out, "must add up to 100") {
			t.Fatalf("weights 60/60 accepted: %v %s", err, out)
		}
		c.MustKubectl(t, greeterRouter(0, 100, ""), "apply", "-f", "-")
		testutil.Eventually(t, 10*time.Second, "Accepted=True again", func() bool { _, s, _, _ := accepted(t, c, "demo", "greeter"); return s == "True" })
		testutil.Eventually(t, 10*time.Second, "0/100", func() bool {
			r, _, _ := rec.last()
			return routeFor(r, greeterListener, "sayHello") == clusterV1+":0,"+clusterV2+":100"
		})
	})

	t.Run("5 controller restart", func(t *testing.T) {
		// sayHello goes to v2 (now the provider v2b), the rest to v1.
		streams := demo.received.Streams()
		ctrl.Kill()
		_, applied, _ := rec.last()
		c.MustKubectl(t, greeterRouter(50, 50, ""), "apply", "-f", "-")
		// The client has seen its stream end and tried to open another.
		testutil.Eventually(t, 10*time.Second, "a reconnection attempt", func() bool { return demo.received.Streams() > streams })
		for i := 0; i < 10; i++ {
			if got := callAs(addr, "sayHello"); got != "v2b" {
				t.Fatalf("with the controller away, sayHello answered by %s, want v2b", got)
			}
			if got := callAs(addr, "other"); got != "v1" {
				t.Fatalf("with the controller away, other answered by %s, want v1", got)
			}
		}
		if _, n, _ := rec.last(); n != applied {
			t.Fatal("the proxy changed its config while the controller was away")
		}
		ctrl = c.StartController(parent, ctrlBin, ctrl.XDSAddr, ctrl.HTTPAddr)
		testutil.Eventually(t, 15*time.Second, "resync to 50/50", func() bool {
			r, _, _ := rec.last()
			return routeFor(r, greeterListener, "sayHello") == clusterV1+":50,"+clusterV2+":50"
		})
	})

	t.Run("6 sidecar scoping", func(t *testing.T) {
		for _, ns := range []string{"team-a", "team-b"} {
			c.MustNamespace(t, ns)
			c.MustKubectl(t, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: svc, namespace: %[1]s}
spec:
  ports: [{name: dubbo, port: %[2]d}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: %[1]s}
spec:
  egress: [{hosts: ["./*"]}]
`, ns, map[string]int{"team-a": 21000, "team-b": 21001}[ns]), "apply", "-f", "-")
		}
		a := startProxyClient(t, ctrl.XDSAddr, "proxy-a", "team-a")
		b := startProxyClient(t, ctrl.XDSAddr, "proxy-b", "team-b")
		for ns, rec := range map[string]*recorder{"team-a": a, "team-b": b} {
			want := "svc." + ns + ".svc.cluster.local_" + map[string]string{"team-a": "21000", "team-b": "21001"}[ns]
			testutil.Eventually(t, 10*time.Second, ns+" listeners", func() bool {
				r, _, _ := rec.last()
				names := listenerNames(r)
				return len(names) == 1 && names[0] == want
			})
		}
		// The controller's config dump says the same.
		resp, err := http.Get("http://" + ctrl.DebugAddr + "/debug/config_dump?node=proxy-a")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "svc.team-a.svc.cluster.local_21000") || strings.Contains(string(body), "team-b") || strings.Contains(string(body), "greeter") {
			t.Fatalf("config dump of proxy-a:\n%s", body)
		}
	})

	t.Run("7 Aeraki-style MetaRouter and port name", func(t *testing.T) {
		c.MustNamespace(t, "meta-dubbo")
		c.MustKubectl(t, `apiVersion: v1
kind: Service
metadata: {name: dubbo-sample-provider, namespace: meta-dubbo}
spec:
  ports: [{name: tcp-metaprotocol-dubbo, port: 20890}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: provider-v1
  namespace: meta-dubbo
  labels: {kubernetes.io/service-name: dubbo-sample-provider, version: v1}
addressType: IPv4
ports: [{name: tcp-metaprotocol-dubbo, port: 20891}]
endpoints: [{addresses: [192.0.2.3]}]
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: dubbo-sample-provider, namespace: meta-dubbo}
spec:
  host: dubbo-sample-provider.meta-dubbo.svc.cluster.local
  subsets:
  - name: v1
    labels: {version: v1}
---
apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata:
  name: attribute-based-route
  namespace: meta-dubbo
spec:
  hosts:
  - dubbo-sample-provider.meta-dubbo.svc.cluster.local
  routes:
  - name: v1
    match:
      attributes:
        interface:
          exact: org.apache.dubbo.samples.basic.api.DemoService
        method:
          exact: sayHello
    route:
    - destination:
        host: dubbo-sample-provider.meta-dubbo.svc.cluster.local
        subset: v1
`, "apply", "-f", "-")
		rec := startProxyClient(t, ctrl.XDSAddr, "proxy-meta", "meta-dubbo")
		testutil.Eventually(t, 10*time.Second, "the Aeraki route", func() bool {
			r, _, _ := rec.last()
			return routeFor(r, "dubbo-sample-provider.meta-dubbo.svc.cluster.local_20890", "sayHello") == "outbound|20890|v1|dubbo-sample-provider.meta-dubbo.svc.cluster.local"
		})
	})

	t.Run("leader election", func(t *testing.T) {
		out := c.MustKubectl(t, "", "get", "lease", "rosetta-controller", "-n", "rosetta-system", "-o", "jsonpath={.spec.holderIdentity}")
		if strings.TrimSpace(out) == "" {
			t.Fatal("no leader holds the lease")
		}
	})
}

// checkSteps fails unless got is one or two versions, all after from.
func checkSteps(t *testing.T, typ string, got []uint64, from uint64) {
	t.Helper()
	if len(got) == 0 || len(got) > 2 || got[0] <= from {
		t.Errorf("%s: the proxy received versions %v for the second change, want one or two after %d", typ, got, from)
	}
}
