package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
)

// recorder is the proxy's side of the test: it keeps what apply received.
type recorder struct {
	mu   sync.Mutex
	sets []config.Resources
	at   []time.Time
}

func (r *recorder) apply(res config.Resources) error {
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- client.Run(ctx, client.Options{Address: addr, NodeID: id, Namespace: ns, ListenAddress: "127.0.0.1",
			Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
			InitialBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}, rec.apply)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("client.Run: %v", err)
		}
	})
	return rec
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

// The API server refuses loopback addresses in EndpointSlices, so the
// endpoints are documentation addresses; these tests check what reaches
// the proxy, not traffic.
const greeterMesh = `apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: demo}
spec:
  ports: [{name: tcp-dubbo-greeter, port: 20880, targetPort: 20880}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter-v1
  namespace: demo
  labels: {kubernetes.io/service-name: greeter, endpointslice.kubernetes.io/managed-by: e2e, version: v1}
addressType: IPv4
ports: [{name: tcp-dubbo-greeter, port: 20881}]
endpoints: [{addresses: [192.0.2.1]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter-v2
  namespace: demo
  labels: {kubernetes.io/service-name: greeter, endpointslice.kubernetes.io/managed-by: e2e, version: v2}
addressType: IPv4
ports: [{name: tcp-dubbo-greeter, port: 20882}]
endpoints: [{addresses: [192.0.2.2]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: demo}
spec:
  host: greeter.demo.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

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

const (
	greeterListener = "greeter.demo.svc.cluster.local_20880"
	clusterV1       = "outbound|20880|v1|greeter.demo.svc.cluster.local"
	clusterV2       = "outbound|20880|v2|greeter.demo.svc.cluster.local"
)

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
// token and the proxy's xDS client in process.
func TestControlPlane(t *testing.T) {
	c := needCluster(t)
	c.MustNamespace(t, "demo")
	c.MustKubectl(t, greeterMesh, "apply", "-f", "-")
	c.MustKubectl(t, greeterRouter(0, 100, ""), "apply", "-f", "-")
	ctrl := c.StartController(t, ctrlBin, "", "")
	rec := startProxyClient(t, ctrl.XDSAddr, "proxy-demo", "demo")
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
		testutil.Eventually(t, 10*time.Second, "Accepted=True", func() bool { _, s, _, _ := accepted(t, c, "demo", "greeter"); return s == "True" })
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

	t.Run("3 invalid MetaRouter keeps the previous route", func(t *testing.T) {
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
		c.MustKubectl(t, greeterRouter(20, 80, ""), "apply", "-f", "-")
		testutil.Eventually(t, 10*time.Second, "Accepted=True again", func() bool { _, s, _, _ := accepted(t, c, "demo", "greeter"); return s == "True" })
	})

	t.Run("4 controller restart", func(t *testing.T) {
		ctrl.Kill()
		_, applied, _ := rec.last()
		c.MustKubectl(t, greeterRouter(50, 50, ""), "apply", "-f", "-")
		r, n, _ := rec.last()
		if n != applied || len(r.Listeners) != 1 {
			t.Fatal("the proxy lost its config while the controller was away")
		}
		ctrl = c.StartController(parent, ctrlBin, ctrl.XDSAddr, ctrl.HTTPAddr)
		testutil.Eventually(t, 15*time.Second, "resync to 50/50", func() bool {
			r, _, _ := rec.last()
			return routeFor(r, greeterListener, "sayHello") == clusterV1+":50,"+clusterV2+":50"
		})
	})

	t.Run("5 sidecar scoping", func(t *testing.T) {
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

	t.Run("6 Aeraki-style MetaRouter and port name", func(t *testing.T) {
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
