package k8s

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// configDump reads a proxy's /config_dump.
func configDump(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/config_dump")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// load calls sayHello continuously from a few consumers and counts the
// answers per provider, and the failures.
type load struct {
	mu     sync.Mutex
	counts map[string]int
	fails  atomic.Int64
	lastEr atomic.Value
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startLoad(t *testing.T, addr string, workers int) *load {
	t.Helper()
	l := &load{counts: map[string]int{}, stop: make(chan struct{})}
	for w := 0; w < workers; w++ {
		c := dubbokit.NewConsumer(t, addr, dubbokit.ConsumerConfig{Version: "1.0.0", Timeout: 10 * time.Second})
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				got, err := c.SayHello(context.Background(), "x")
				if err != nil {
					l.fails.Add(1)
					l.lastEr.Store(err.Error())
					continue
				}
				name, _, _ := strings.Cut(got, ":")
				l.mu.Lock()
				l.counts[name]++
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(l.halt)
	return l
}

func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// snapshot returns and resets the counts.
func (l *load) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.counts
	l.counts = map[string]int{}
	return out
}

func trafficRouter(w1, w2 int) string {
	return fmt.Sprintf(`apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: greeter, namespace: traffic}
spec:
  hosts: [greeter.traffic.svc.cluster.local]
  routes:
  - name: say-hello
    match: {attributes: {method: {exact: sayHello}}}
    route:
    - {destination: {host: greeter, subset: v1}, weight: %d}
    - {destination: {host: greeter, subset: v2}, weight: %d}
  - name: rest
    route: [{destination: {host: greeter, subset: v1}}]
`, w1, w2)
}

// TestTraffic sends real Dubbo calls (dubbo-go consumers and providers)
// through rosetta-proxy processes configured by the controller from the
// API server: routing to a subset, a weight change under load, and a
// controller restart under load.
func TestTraffic(t *testing.T) {
	c := needCluster(t)
	if proxyErr != nil {
		t.Fatalf("rosetta-proxy: %v", proxyErr)
	}
	v1 := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "v1", Version: "1.0.0"})
	v2 := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "v2", Version: "1.0.0"})
	port := testutil.FreePort(t)
	c.MustNamespace(t, "traffic")
	c.MustKubectl(t, greeterObjects("traffic", port, fmt.Sprint(v1.Port()), fmt.Sprint(v2.Port())), "apply", "-f", "-")
	c.MustKubectl(t, trafficRouter(0, 100), "apply", "-f", "-")
	ctrl := c.StartController(t, ctrlBin, "", "")
	c.StartProxy(t, proxyBin, ctrl.XDSAddr, "traffic-proxy", "traffic")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	testutil.Eventually(t, 15*time.Second, "the proxy's listener", func() bool {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	consumer := dubbokit.NewConsumer(t, addr, dubbokit.ConsumerConfig{Version: "1.0.0", Timeout: 10 * time.Second})
	parent := t // the restarted controller must outlive its subtest

	t.Run("1 sayHello goes to v2, the rest to v1", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			if got, err := consumer.SayHello(context.Background(), "x"); err != nil || got != "v2: hello x" {
				t.Fatalf("sayHello = %q, %v", got, err)
			}
			if got, err := consumer.Echo(context.Background(), "y"); err != nil || got != "v1: y" {
				t.Fatalf("echo = %q, %v", got, err)
			}
		}
	})

	t.Run("2 weights 100/0 to 20/80 under load", func(t *testing.T) {
		c.MustKubectl(t, trafficRouter(100, 0), "apply", "-f", "-")
		testutil.Eventually(t, 5*time.Second, "all sayHello on v1", func() bool {
			got, err := consumer.SayHello(context.Background(), "x")
			return err == nil && got == "v1: hello x"
		})
		l := startLoad(t, addr, 4)
		testutil.Eventually(t, 5*time.Second, "load running", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.counts["v1"] > 50 })
		c.MustKubectl(t, trafficRouter(20, 80), "apply", "-f", "-")
		written := time.Now()
		testutil.Eventually(t, 5*time.Second, "the first call on v2", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.counts["v2"] > 0 })
		if d := time.Since(written); d > time.Second {
			t.Errorf("the change took effect %v after the write, want under 1s", d)
		}
		l.snapshot()
		testutil.Eventually(t, 20*time.Second, "2000 calls", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.counts["v1"]+l.counts["v2"] >= 2000 })
		l.halt()
		got := l.snapshot()
		share := float64(got["v2"]) / float64(got["v1"]+got["v2"])
		t.Logf("split after the change: %v (v2 %.1f%%)", got, share*100)
		if share < 0.75 || share > 0.85 {
			t.Errorf("v2 share %.3f, want 0.80 within 5 points", share)
		}
		if n := l.fails.Load(); n > 0 {
			t.Errorf("%d calls failed during the change, e.g. %v", n, l.lastEr.Load())
		}
	})

	t.Run("3 an invalid MetaRouter leaves traffic on the previous route", func(t *testing.T) {
		bad := strings.Replace(trafficRouter(100, 0), "method: {exact: sayHello}", `method: {regex: "say(Hello"}`, 1)
		c.MustKubectl(t, bad, "apply", "-f", "-")
		// Status comes from the leader: when an earlier test killed the
		// leader, its lease (15 s) must expire first.
		testutil.Eventually(t, 30*time.Second, "Accepted=False", func() bool { _, s, _, _ := accepted(t, c, "traffic", "greeter"); return s == "False" })
		seen := map[string]int{}
		for i := 0; i < 200; i++ {
			got, err := consumer.SayHello(context.Background(), "x")
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			seen[got]++
		}
		// Still the 20/80 split of the last valid version.
		if seen["v1: hello x"] == 0 || seen["v2: hello x"] < 120 {
			t.Fatalf("calls after the invalid update: %v", seen)
		}
		c.MustKubectl(t, trafficRouter(20, 80), "apply", "-f", "-")
		testutil.Eventually(t, 30*time.Second, "Accepted=True", func() bool { _, s, _, _ := accepted(t, c, "traffic", "greeter"); return s == "True" })
	})

	t.Run("4 controller restart under load", func(t *testing.T) {
		l := startLoad(t, addr, 4)
		testutil.Eventually(t, 5*time.Second, "load running", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.counts["v2"] > 50 })
		ctrl.Kill()
		before := l.snapshot()
		testutil.Eventually(t, 10*time.Second, "500 calls while the controller is away", func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.counts["v1"]+l.counts["v2"] >= 500
		})
		c.StartController(parent, ctrlBin, ctrl.XDSAddr, ctrl.HTTPAddr)
		c.MustKubectl(t, trafficRouter(100, 0), "apply", "-f", "-")
		testutil.Eventually(t, 10*time.Second, "the proxy resynced", func() bool {
			got, err := consumer.SayHello(context.Background(), "x")
			return err == nil && got == "v1: hello x"
		})
		l.halt()
		if n := l.fails.Load(); n > 0 {
			t.Errorf("%d calls failed across the restart, e.g. %v (before: %v)", n, l.lastEr.Load(), before)
		}
	})

	t.Run("5 two proxies in two namespaces see only their own services", func(t *testing.T) {
		dumps := map[string]string{}
		for _, ns := range []string{"scope-a", "scope-b"} {
			c.MustNamespace(t, ns)
			port := testutil.FreePort(t)
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
`, ns, port), "apply", "-f", "-")
			dumps[ns] = c.StartProxy(t, proxyBin, ctrl.XDSAddr, "proxy-"+ns, ns)
		}
		for ns, admin := range dumps {
			other := map[string]string{"scope-a": "scope-b", "scope-b": "scope-a"}[ns]
			var d string
			testutil.MustPoll(t, 10*time.Second, ns+"'s config", func() (bool, error) {
				d = configDump(t, admin)
				return strings.Contains(d, "svc."+ns+".svc.cluster.local"), fmt.Errorf("config dump:\n%s", testutil.Tail([]byte(d), 2000))
			})
			if strings.Contains(d, other) || strings.Contains(d, "greeter") {
				t.Fatalf("%s's proxy holds other namespaces' services:\n%s", ns, d)
			}
		}
	})

	t.Run("6 an Aeraki MetaRouter on a tcp-metaprotocol-dubbo port", func(t *testing.T) {
		aport := testutil.FreePort(t)
		c.MustNamespace(t, "meta-traffic")
		c.MustKubectl(t, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: provider, namespace: meta-traffic}
spec:
  ports: [{name: tcp-metaprotocol-dubbo-provider, port: %d}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: provider-v1
  namespace: meta-traffic
  labels: {kubernetes.io/service-name: provider, version: v1}
addressType: FQDN
ports: [{name: tcp-metaprotocol-dubbo-provider, port: %d}]
endpoints: [{addresses: [providers.localhost]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: provider-v2
  namespace: meta-traffic
  labels: {kubernetes.io/service-name: provider, version: v2}
addressType: FQDN
ports: [{name: tcp-metaprotocol-dubbo-provider, port: %d}]
endpoints: [{addresses: [providers.localhost]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: meta-traffic}
spec:
  egress: [{hosts: ["./*"]}]
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: provider, namespace: meta-traffic}
spec:
  host: provider.meta-traffic.svc.cluster.local
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
---
apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata:
  name: attribute-based-route
  namespace: meta-traffic
spec:
  hosts:
  - provider.meta-traffic.svc.cluster.local
  routes:
  - name: v1
    match:
      attributes:
        interface:
          exact: %s
        method:
          exact: sayHello
    route:
    - destination:
        host: provider.meta-traffic.svc.cluster.local
        subset: v1
  - name: v2
    route:
    - destination:
        host: provider.meta-traffic.svc.cluster.local
        subset: v2
`, aport, v1.Port(), v2.Port(), dubbokit.Greeter), "apply", "-f", "-")
		c.StartProxy(t, proxyBin, ctrl.XDSAddr, "proxy-meta-traffic", "meta-traffic")
		addr := fmt.Sprintf("127.0.0.1:%d", aport)
		testutil.Eventually(t, 15*time.Second, "the Aeraki service's listener", func() bool {
			conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				conn.Close()
			}
			return err == nil
		})
		cons := dubbokit.NewConsumer(t, addr, dubbokit.ConsumerConfig{Version: "1.0.0", Timeout: 10 * time.Second})
		if got, err := cons.SayHello(context.Background(), "x"); err != nil || got != "v1: hello x" {
			t.Fatalf("sayHello = %q, %v", got, err)
		}
		if got, err := cons.Echo(context.Background(), "y"); err != nil || got != "v2: y" {
			t.Fatalf("echo = %q, %v", got, err)
		}
	})
}

// greeterObjects is the greeter Service of namespace ns on port, its v1
// and v2 providers published as FQDN EndpointSlices (IPv4 slices may not
// hold loopback addresses; "providers.localhost" is loopback by RFC 6761
// and the controller resolves it), a Sidecar scoping the namespace's proxy
// to its own services (all proxies of these tests share one host, so
// otherwise they would bind the same ports), and the subsets.
func greeterObjects(ns string, port int, v1Port, v2Port string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: %[1]s}
spec:
  ports: [{name: tcp-dubbo, port: %[2]d}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter-v1
  namespace: %[1]s
  labels: {kubernetes.io/service-name: greeter, endpointslice.kubernetes.io/managed-by: e2e, version: v1}
addressType: FQDN
ports: [{name: tcp-dubbo, port: %[3]s}]
endpoints: [{addresses: [providers.localhost]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter-v2
  namespace: %[1]s
  labels: {kubernetes.io/service-name: greeter, endpointslice.kubernetes.io/managed-by: e2e, version: v2}
addressType: FQDN
ports: [{name: tcp-dubbo, port: %[4]s}]
endpoints: [{addresses: [providers.localhost]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: %[1]s}
spec:
  egress: [{hosts: ["./*"]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: %[1]s}
spec:
  host: greeter
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`, ns, port, v1Port, v2Port)
}
