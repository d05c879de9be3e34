package dubbo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
)

// Lazy mode end to end: rosetta-controller in folder mode with two Dubbo
// services (real dubbo-go providers) and --lazy-fallback; a shared
// fallback rosetta-proxy on 127.0.0.1 with every service's config; a
// rosetta-proxy --lazy on 127.0.0.2, and a dubbo-go consumer calling
// through it. The first call to a service goes through the fallback and
// succeeds; the lazy proxy reports the service over xDS and gets its
// config; later calls go direct. A service never called stays out of the
// lazy proxy's config.
func TestLazyProxyLearnsWhatItsCallersCall(t *testing.T) {
	a := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	b := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "b", Version: version})
	portA, portB := testutil.FreePort(t), testutil.FreePort(t)
	dir := t.TempDir()
	mesh := lazyService("alpha", portA, a.Port()) + "---\n" + lazyService("beta", portB, b.Port())
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(mesh), 0o644); err != nil {
		t.Fatal(err)
	}
	xdsAddr := startLazyController(t, dir, "127.0.0.1")
	bin := testutil.GoBuild(t, filepath.Join("..", ".."), "./cmd/rosetta-proxy")
	fallback := startXDSProxy(t, bin, xdsAddr, "fallback", "127.0.0.1")
	lazy := startXDSProxy(t, bin, xdsAddr, "app", "127.0.0.2", "--lazy", "--mode", "sidecar")
	alpha, beta := "outbound|"+fmt.Sprint(portA)+"||alpha.shop.svc.cluster.local", "outbound|"+fmt.Sprint(portB)+"||beta.shop.svc.cluster.local"
	viaFallback := "outbound|" + fmt.Sprint(portA) + "||127.0.0.1"
	for _, want := range []string{viaFallback, "alpha.shop.svc.cluster.local:" + fmt.Sprint(portA)} {
		testutil.Eventually(t, 10*time.Second, "the lazy proxy's fallback config", func() bool { return strings.Contains(lazy.configDump(t), want) })
	}
	if dump := lazy.configDump(t); strings.Contains(dump, alpha) || strings.Contains(dump, beta) {
		t.Fatalf("the lazy proxy has a service's cluster before any call:\n%s", dump)
	}

	c := dubbokit.NewConsumer(t, fmt.Sprintf("127.0.0.2:%d", portA), consumerConfig())
	ctx := context.Background()
	start := time.Now()
	if got, err := c.SayHello(ctx, "first"); err != nil || got != "a: hello first" {
		t.Fatalf("first call = %q, %v; want a's answer through the fallback", got, err)
	}
	t.Logf("first call, through the fallback: %v", time.Since(start))
	if n := okRequests(fallback.metrics(t), alpha); n != 1 {
		t.Errorf("the fallback served %v calls to alpha, want the first one", n)
	}
	testutil.Eventually(t, 10*time.Second, "alpha in the lazy proxy's config", func() bool { return strings.Contains(lazy.configDump(t), alpha) })
	var direct []time.Duration
	for i := range 5 {
		start := time.Now()
		if got, err := c.SayHello(ctx, fmt.Sprint(i)); err != nil || got != "a: hello "+fmt.Sprint(i) {
			t.Fatalf("call %d = %q, %v", i, got, err)
		}
		direct = append(direct, time.Since(start))
	}
	slices.Sort(direct)
	t.Logf("later calls, direct: median %v", direct[len(direct)/2])
	if n := okRequests(fallback.metrics(t), alpha); n != 1 {
		t.Errorf("the fallback served %v calls to alpha, want only the first: later calls go direct", n)
	}
	if n := okRequests(lazy.metrics(t), alpha); n != 5 {
		t.Errorf("the lazy proxy sent %v calls straight to alpha, want 5", n)
	}
	if dump := lazy.configDump(t); strings.Contains(dump, beta) {
		t.Errorf("beta, never called, is in the lazy proxy's config")
	}
}

// The fallback over Istio mTLS: the lazy proxy and the fallback both have
// Istio identities (certificates of one in-test CA), the fallback's
// namespace is STRICT (a PeerAuthentication), and --lazy-fallback names
// the fallback's headless Service, whose EndpointSlice lists the fallback
// pod with no ports. The lazy proxy originates Istio mTLS to the fallback,
// verifying the fallback pod's service account, at the destination's
// port; the first call, through the fallback, succeeds. A plaintext
// caller is refused by the fallback, so the call could not have gone
// through it in plaintext.
func TestLazyFallbackOverIstioMutualTLS(t *testing.T) {
	const (
		fallbackHost = "rosetta-fallback.rosetta-system.svc.cluster.local"
		fallbackID   = "spiffe://cluster.local/ns/rosetta-system/sa/rosetta-fallback"
	)
	a := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	portA := testutil.FreePort(t)
	dir := t.TempDir()
	mesh := lazyService("alpha", portA, a.Port()) + "---\n" + fallbackObjects
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(mesh), 0o644); err != nil {
		t.Fatal(err)
	}
	ca := identitytest.NewCA("mesh")
	xdsAddr := startLazyController(t, dir, fallbackHost)
	bin := testutil.GoBuild(t, filepath.Join("..", ".."), "./cmd/rosetta-proxy")
	fallback := startXDSProxy(t, bin, xdsAddr, "fallback", "127.0.0.1", "--namespace", "rosetta-system", "--labels", "app=rosetta-fallback",
		"--identity", "files", "--cert-dir", certDir(t, ca, fallbackID))
	lazy := startXDSProxy(t, bin, xdsAddr, "app", "127.0.0.2", "--lazy", "--mode", "sidecar",
		"--identity", "files", "--cert-dir", certDir(t, ca, "spiffe://cluster.local/ns/shop/sa/app"))
	alpha := "outbound|" + fmt.Sprint(portA) + "||alpha.shop.svc.cluster.local"
	viaFallback := "outbound|" + fmt.Sprint(portA) + "||" + fallbackHost
	testutil.Eventually(t, 10*time.Second, "the lazy proxy's fallback config", func() bool { return strings.Contains(lazy.configDump(t), viaFallback) })
	testutil.Eventually(t, 10*time.Second, "the fallback's listener", func() bool {
		return strings.Contains(fallback.configDump(t), "alpha.shop.svc.cluster.local_"+fmt.Sprint(portA))
	})

	plain := dubbokit.DialRaw(t, fmt.Sprintf("127.0.0.1:%d", portA))
	if err := plain.Send(1, dubbokit.Call{Version: version, Method: "sayHello", Arg: "plaintext"}); err != nil {
		t.Fatal(err)
	}
	if err := plain.WaitClosed(10 * time.Second); err != nil {
		t.Fatalf("the STRICT fallback kept a plaintext caller's connection: %v", err)
	}

	c := dubbokit.NewConsumer(t, fmt.Sprintf("127.0.0.2:%d", portA), consumerConfig())
	start := time.Now()
	if got, err := c.SayHello(context.Background(), "first"); err != nil || got != "a: hello first" {
		t.Fatalf("first call = %q, %v; want a's answer through the fallback over mTLS", got, err)
	}
	t.Logf("first call, through the fallback over mTLS: %v", time.Since(start))
	if n := okRequests(fallback.metrics(t), alpha); n != 1 {
		t.Errorf("the fallback served %v calls to alpha, want the first one", n)
	}
	dump := lazy.configDump(t)
	for _, want := range []string{"outbound_." + fmt.Sprint(portA) + "_._." + fallbackHost, fallbackID} {
		if !strings.Contains(dump, want) {
			t.Errorf("the lazy proxy's fallback cluster does not name %s", want)
		}
	}
	testutil.Eventually(t, 10*time.Second, "alpha in the lazy proxy's config", func() bool { return strings.Contains(lazy.configDump(t), alpha) })
}

// fallbackObjects are the fallback's headless Service without ports, its
// EndpointSlice (the fallback pod on 127.0.0.1, no ports, as Kubernetes
// writes it for such a Service), the pod (an Istio workload of service
// account rosetta-fallback) and a STRICT PeerAuthentication for its
// namespace.
const fallbackObjects = `apiVersion: v1
kind: Service
metadata: {name: rosetta-fallback, namespace: rosetta-system}
spec: {clusterIP: None, selector: {app: rosetta-fallback}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: rosetta-fallback-1
  namespace: rosetta-system
  labels: {kubernetes.io/service-name: rosetta-fallback}
addressType: IPv4
ports: []
endpoints: [{addresses: [127.0.0.1], targetRef: {kind: Pod, name: rosetta-fallback-1}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: rosetta-fallback-1
  namespace: rosetta-system
  labels: {app: rosetta-fallback, security.istio.io/tlsMode: istio}
spec: {serviceAccountName: rosetta-fallback, containers: [{name: proxy, image: rosetta-proxy}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: rosetta-system}
spec: {mtls: {mode: STRICT}}
`

// certDir writes a workload certificate of id from ca, as rosetta-proxy
// --identity files reads it, and returns the folder.
func certDir(t *testing.T, ca *identitytest.CA, id string) string {
	t.Helper()
	dir := t.TempDir()
	cert, key := ca.Leaf(id, time.Hour)
	for name, b := range map[string][]byte{"cert-chain.pem": cert, "key.pem": key, "root-cert.pem": ca.PEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// lazyService is a Service of namespace shop on port, with one endpoint,
// 127.0.0.1:target.
func lazyService(name string, port, target int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: shop}
spec:
  ports: [{name: tcp-dubbo, port: %[2]d}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s
  namespace: shop
  labels: {kubernetes.io/service-name: %[1]s}
addressType: IPv4
ports: [{name: tcp-dubbo, port: %[3]d}]
endpoints: [{addresses: [127.0.0.1]}]
`, name, port, target)
}

// startLazyController runs rosetta-controller on folder dir with
// fallback as --lazy-fallback, and returns its xDS address.
func startLazyController(t *testing.T, dir, fallback string) string {
	t.Helper()
	bin := testutil.GoBuild(t, filepath.Join("..", ".."), "./cmd/rosetta-controller")
	return testutil.OnFreePorts(t, 2, func(ports []int) (string, error) {
		xdsAddr, httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
		p := testutil.StartT(t, testutil.Command{Name: "rosetta-controller", Path: bin, Args: []string{
			"--config-dir", dir, "--xds-address", xdsAddr, "--http-address", httpAddr, "--debug-address", "", "--lazy-fallback", fallback,
		}})
		return xdsAddr, p.Ready(proxyWait, "ready", testutil.HTTPOK("http://"+httpAddr+"/readyz"))
	})
}

// startXDSProxy runs rosetta-proxy (bin) over xDS as node id in namespace
// shop, its listeners on listenAddr.
func startXDSProxy(t *testing.T, bin, xdsAddr, id, listenAddr string, flags ...string) *proxyProcess {
	t.Helper()
	px := &proxyProcess{}
	px.p = testutil.StartT(t, testutil.Command{Name: "rosetta-proxy " + id, Path: bin, Args: append([]string{
		"--xds", xdsAddr, "--node-id", id, "--namespace", "shop", "--listen-address", listenAddr, "--admin", "127.0.0.1:0", "--log-level", "debug",
	}, flags...)})
	var err error
	if px.admin, err = px.p.LoggedAddr(proxyWait, "rosetta-proxy started", "admin"); err != nil {
		t.Fatal(err)
	}
	if err := px.p.Ready(proxyWait, "ready", testutil.HTTPOK("http://"+px.admin+"/ready")); err != nil {
		t.Fatal(err)
	}
	return px
}

func (px *proxyProcess) configDump(t *testing.T) string {
	t.Helper()
	return testutil.Get(t, "http://"+px.admin+"/config_dump")
}

// okRequests sums rosetta_requests_total of a cluster's answered calls.
func okRequests(metrics, cluster string) float64 {
	sum := 0.0
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, "rosetta_requests_total{") && strings.Contains(l, `cluster="`+cluster+`"`) && strings.Contains(l, `status="ok"`) {
			var v float64
			if _, err := fmt.Sscan(l[strings.LastIndex(l, " ")+1:], &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}
