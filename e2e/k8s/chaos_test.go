package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// chaosNS holds TestChaos's objects; its Sidecar keeps other tests'
// proxies from binding its port.
const chaosNS = "chaos"

// holdCalls is how many calls TestChaos keeps blocked in the provider it
// kills: the calls that must fail.
const holdCalls = 5

// call is one finished call of the chaos load.
type call struct {
	method, provider string
	start, end       time.Time
	err              error
}

// chaosLoad calls sayHello and echo in turn from a few goroutines at a
// steady rate through one dubbo-go consumer, and keeps what happened.
type chaosLoad struct {
	// cons is the consumer the load calls through; use swaps it.
	cons   atomic.Pointer[dubbokit.Consumer]
	mu     sync.Mutex
	calls  []call
	stop   chan struct{}
	wg     sync.WaitGroup
	halted sync.Once
}

// startChaosLoad calls at about workers*rate calls a second.
func startChaosLoad(t *testing.T, cons *dubbokit.Consumer, workers int, rate float64) *chaosLoad {
	l := &chaosLoad{stop: make(chan struct{})}
	l.cons.Store(cons)
	every := time.Duration(float64(time.Second) / rate)
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := w; ; i++ {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				method := []string{dubbokit.MethodSayHello, dubbokit.MethodEcho}[i%2]
				l.record(method, func() (string, error) { return l.cons.Load().Call(context.Background(), method, "x") })
			}
		}()
	}
	t.Cleanup(l.halt)
	return l
}

func (l *chaosLoad) record(method string, do func() (string, error)) {
	c := call{method: method, start: time.Now()}
	got, err := do()
	c.end, c.err = time.Now(), err
	c.provider, _, _ = strings.Cut(got, ":")
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
}

func (l *chaosLoad) halt() {
	l.halted.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// since returns the calls that started at or after from.
func (l *chaosLoad) since(from time.Time) []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []call
	for _, c := range l.calls {
		if !c.start.Before(from) {
			out = append(out, c)
		}
	}
	return out
}

// served counts the successful calls of method by provider.
func served(calls []call, method string) map[string]int {
	out := map[string]int{}
	for _, c := range calls {
		if c.err == nil && c.method == method {
			out[c.provider]++
		}
	}
	return out
}

// failed returns the calls that failed.
func failed(calls []call) []call {
	var out []call
	for _, c := range calls {
		if c.err != nil {
			out = append(out, c)
		}
	}
	return out
}

// noFailures fails the test when a call that started in [from, now)
// failed; what names the phase.
func (l *chaosLoad) noFailures(t *testing.T, from time.Time, what string) {
	t.Helper()
	calls := l.since(from)
	if f := failed(calls); len(f) > 0 {
		t.Errorf("%s: %d of %d calls failed, first: %s at +%v: %v", what, len(f), len(calls), f[0].method, f[0].start.Sub(from), f[0].err)
	}
}

// chaosProvider is a dubbo-go provider process that the test kills and
// restarts on the same address, as a crashed container restarts in its
// pod.
type chaosProvider struct {
	name, addr string
	proc       *testutil.Process
}

// startChaosProvider starts a provider on a port it keeps across
// restarts; testutil.OnFreePorts picks the port, and picks again if
// another process took it first.
func startChaosProvider(t *testing.T, name, bin, dir string) *chaosProvider {
	t.Helper()
	return testutil.OnFreePorts(t, 1, func(ports []int) (*chaosProvider, error) {
		p := &chaosProvider{name: name, addr: fmt.Sprintf("127.0.0.1:%d", ports[0])}
		return p, p.start(t, bin, dir)
	})
}

// start starts the provider's process, again after a kill, and waits until
// it listens.
func (p *chaosProvider) start(t *testing.T, bin, dir string) error {
	t.Helper()
	p.proc = testutil.StartT(t, testutil.Command{Name: "provider " + p.name, Path: bin,
		Args: []string{"-name=" + p.name, "-addr=" + p.addr}, Log: filepath.Join(dir, "provider-"+p.name+".log")})
	return p.proc.Ready(10*time.Second, "listening", testutil.Dialable(p.addr))
}

func (p *chaosProvider) port() string {
	_, port, _ := net.SplitHostPort(p.addr)
	return port
}

// buildProvider builds testdata/chaosprovider, a provider in a process of
// its own that SIGKILL can end.
func buildProvider(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "chaosprovider")
	if err := kubeenv.GoBuild(".", bin, "./testdata/chaosprovider"); err != nil {
		t.Fatal(err)
	}
	return bin
}

// chaosRouter pins hold to v2 (so the calls blocked there are known), echo
// to echoTo, and spreads the rest over both providers, retrying a call
// that finds its provider gone (connect-failure) on the other.
func chaosRouter(echoTo string) string {
	return fmt.Sprintf(`apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: greeter, namespace: chaos}
spec:
  hosts: [greeter.chaos.svc.cluster.local]
  routes:
  - name: hold
    match: {attributes: {method: {exact: hold}}}
    route: [{destination: {host: greeter, subset: v2}}]
  - name: echo
    match: {attributes: {method: {exact: echo}}}
    route: [{destination: {host: greeter, subset: %s}}]
  - name: rest
    route: [{destination: {host: greeter}}]
    retries: {attempts: 2, retryOn: connect-failure}
`, echoTo)
}

// unknownCodec is a protocol whose codec no proxy of this build has: the
// controller cannot know what a proxy build holds, so it accepts it, and
// the proxies refuse (NACK) every config with a listener that uses it.
func unknownCodec(port int) string {
	return fmt.Sprintf(`apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: ApplicationProtocol
metadata: {name: chaos-inhouse}
spec: {protocol: inhouse, codec: inhouse}
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: chaos}
spec:
  ports: [{name: tcp-inhouse, port: %d}]
`, port)
}

// scrape returns a process's /metrics.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricSum adds up every series of a metric.
func metricSum(text, name string) float64 {
	sum := 0.0
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, name+"{") || strings.HasPrefix(l, name+" ") {
			series, _, _ := strings.Cut(l, " ")
			sum += metricValue(text, series)
		}
	}
	return sum
}

// condition returns a MetaRouter's condition of type typ; ok false when it
// has none.
func condition(t *testing.T, c *kubeenv.Cluster, ns, name, typ string) (status, reason, msg string, ok bool) {
	t.Helper()
	out := c.MustKubectl(t, "", "get", "metarouter", name, "-n", ns, "-o", "json")
	var mr struct {
		Status struct {
			Conditions []struct{ Type, Status, Reason, Message string }
		}
	}
	if err := json.Unmarshal([]byte(out), &mr); err != nil {
		t.Fatal(err)
	}
	for _, cd := range mr.Status.Conditions {
		if cd.Type == typ {
			return cd.Status, cd.Reason, cd.Message, true
		}
	}
	return "", "", "", false
}

// settles waits until the echo calls of the last half second were all
// served by want: by then every proxy has the config that sends them there.
func settles(t *testing.T, l *chaosLoad, want, what string) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, what, func() bool {
		got := served(l.since(time.Now().Add(-500*time.Millisecond)), dubbokit.MethodEcho)
		return len(got) == 1 && got[want] >= 10
	})
}

// onlyFrom waits a second of load and checks that every echo call of it
// was served by want, and that none failed.
func onlyFrom(t *testing.T, l *chaosLoad, want, what string) {
	t.Helper()
	from := time.Now()
	time.Sleep(time.Second)
	calls := l.since(from)
	got := served(calls, dubbokit.MethodEcho)
	if len(got) != 1 || got[want] == 0 {
		t.Errorf("%s: echo served by %v, want only %s", what, got, want)
	}
	l.noFailures(t, from, what)
}

// TestChaos runs one scenario under a steady load of real Dubbo calls
// (a dubbo-go consumer balancing over two rosetta-proxy processes, two
// dubbo-go provider processes behind them): a provider killed with
// SIGKILL and restarted, a route edit, a config both proxies refuse, the
// controller killed and restarted, and a proxy drained with SIGTERM.
// Only the calls in flight on the killed provider may fail.
func TestChaos(t *testing.T) {
	c := needCluster(t)
	if proxyErr != nil {
		t.Fatalf("rosetta-proxy: %v", proxyErr)
	}
	provBin := buildProvider(t, c.Dir)
	v1 := startChaosProvider(t, "v1", provBin, c.Dir)
	v2 := startChaosProvider(t, "v2", provBin, c.Dir)

	port := testutil.FreePort(t)
	c.MustNamespace(t, chaosNS)
	c.MustKubectl(t, greeterObjects(chaosNS, port, v1.port(), v2.port()), "apply", "-f", "-")
	c.MustKubectl(t, chaosRouter("v1"), "apply", "-f", "-")
	ctrl := c.StartController(t, ctrlBin, "", "")
	// Two proxies on one host: each binds the service port on its own
	// loopback address.
	proxyA := c.RunProxy(t, proxyBin, ctrl.XDSAddr, "chaos-a", chaosNS, "--listen-address=127.0.0.1")
	proxyB := c.RunProxy(t, proxyBin, ctrl.XDSAddr, "chaos-b", chaosNS, "--listen-address=127.0.0.2")
	addrA, addrB := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.2:%d", port)
	testutil.MustPoll(t, 15*time.Second, "both proxies listening", func() (bool, error) {
		if ok, err := testutil.Dialable(addrA)(); !ok {
			return false, err
		}
		return testutil.Dialable(addrB)()
	})

	cons := dubbokit.NewConsumer(t, addrA+";"+addrB, dubbokit.ConsumerConfig{Version: "1.0.0", Timeout: 10 * time.Second})
	l := startChaosLoad(t, cons, 4, 40) // about 160 calls a second
	begin := time.Now()
	testutil.Eventually(t, 10*time.Second, "sayHello served by both providers", func() bool {
		got := served(l.since(begin), dubbokit.MethodSayHello)
		return got["v1"] > 0 && got["v2"] > 0
	})
	l.noFailures(t, begin, "warm-up")

	killProvider(t, c, l, cons, v2, provBin, []string{proxyA.Admin, proxyB.Admin}, port)
	if t.Failed() {
		return
	}

	from := time.Now()
	c.MustKubectl(t, chaosRouter("v2"), "apply", "-f", "-")
	settles(t, l, "v2", "echo moved to v2")
	onlyFrom(t, l, "v2", "after moving echo to v2")
	l.noFailures(t, from, "route edit")

	refusedConfig(t, c, l, ctrl, []*kubeenv.Proxy{proxyA, proxyB})

	from = time.Now()
	ctrl.Kill()
	// With the controller gone the proxies serve what they had: echo on
	// v1 (the last config they accepted), the rest on both.
	onlyFrom(t, l, "v1", "controller gone")
	if got := served(l.since(from), dubbokit.MethodSayHello); got["v1"] == 0 || got["v2"] == 0 {
		t.Errorf("controller gone: sayHello served by %v, want both providers", got)
	}
	// A change made while it is away reaches the proxies once it is back.
	c.MustKubectl(t, chaosRouter("v2"), "apply", "-f", "-")
	onlyFrom(t, l, "v1", "controller gone, route edited")
	restarted := time.Now()
	c.StartController(t, ctrlBin, ctrl.XDSAddr, ctrl.HTTPAddr)
	settles(t, l, "v2", "echo on v2 after the restart")
	t.Logf("the proxies resynced %v after the controller's restart", time.Since(restarted).Round(time.Millisecond))
	onlyFrom(t, l, "v2", "controller back")
	l.noFailures(t, from, "controller kill and restart")

	// A user's consumer of several proxies is dubbo-go's default failover
	// cluster: with it, a proxy drained costs no call.
	l.cons.Store(dubbokit.NewConsumer(t, addrA+";"+addrB, dubbokit.ConsumerConfig{Version: "1.0.0", Timeout: 10 * time.Second, Retries: 2}))
	drainProxy(t, l, proxyA)
	l.halt()
	t.Logf("%d calls in %v", len(l.since(begin)), time.Since(begin).Round(time.Second))
}

// killProvider blocks holdCalls calls in v2, checks the proxies count them
// in flight, kills v2 with SIGKILL under load, and restarts it. The held
// calls, and load calls outstanding while it died, may fail; no other.
func killProvider(t *testing.T, c *kubeenv.Cluster, l *chaosLoad, cons *dubbokit.Consumer, v2 *chaosProvider, bin string, admins []string, port int) {
	t.Helper()
	held := make(chan error, holdCalls)
	for range holdCalls {
		go func() {
			_, err := cons.Call(context.Background(), dubbokit.MethodHold, "h")
			held <- err
		}()
	}
	holdCluster := fmt.Sprintf(`rosetta_upstream_requests_active{cluster="outbound|%d|v2|greeter.chaos.svc.cluster.local"}`, port)
	inFlight := func() float64 {
		sum := 0.0
		for _, a := range admins {
			sum += metricValue(scrape(t, a), holdCluster)
		}
		return sum
	}
	testutil.Eventually(t, 10*time.Second, "the held calls in flight on v2", func() bool { return inFlight() == holdCalls })
	gauge := inFlight()

	killed := time.Now()
	v2.proc.Kill() // SIGKILL, and waits for the exit
	gone := time.Now()
	for range holdCalls {
		select {
		case err := <-held:
			if err == nil {
				t.Errorf("a call held in the killed provider succeeded")
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("a call held in the killed provider got no answer")
		}
	}
	t.Logf("the proxies had %v calls in flight on v2 when it was killed; all %d held calls failed", gauge, holdCalls)
	if after := inFlight(); after != 0 {
		t.Errorf("%v calls still in flight on the killed provider", after)
	}
	time.Sleep(time.Second) // load on v1 alone
	if err := v2.start(t, bin, c.Dir); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	testutil.Eventually(t, 30*time.Second, "sayHello served by the restarted v2", func() bool {
		return served(l.since(back), dubbokit.MethodSayHello)["v2"] > 0
	})
	checkKillFailures(t, l.since(killed.Add(-10*time.Second)), killed, gone)
}

// checkKillFailures allows a load call to fail only when it was
// outstanding while the provider died (started before its exit was seen,
// ended after SIGKILL was sent): the proxy had sent it to the provider
// (the other provider answers the calls that find it gone, by retry).
func checkKillFailures(t *testing.T, calls []call, killed, gone time.Time) {
	t.Helper()
	inWindow, outstanding := 0, 0
	for _, c := range calls {
		during := c.start.Before(gone) && c.end.After(killed)
		if during {
			outstanding++
		}
		if c.err == nil {
			continue
		}
		if !during {
			t.Errorf("a %s call not outstanding at the kill failed (+%v to +%v after it): %v", c.method, c.start.Sub(killed), c.end.Sub(killed), c.err)
			continue
		}
		inWindow++
	}
	t.Logf("provider kill: %d of %d load calls in %v failed, %d were outstanding while it died", inWindow, len(calls), time.Since(killed).Round(time.Second), outstanding)
}

// refusedConfig adds a service whose codec the proxies lack: both refuse
// the config (NACK), the controller counts it and says so in the
// MetaRouter's status, and the proxies keep serving what they had, even
// a route edit made meanwhile. Removing the service clears it all.
func refusedConfig(t *testing.T, c *kubeenv.Cluster, l *chaosLoad, ctrl *kubeenv.Controller, proxies []*kubeenv.Proxy) {
	t.Helper()
	from := time.Now()
	nacks := metricSum(scrape(t, ctrl.HTTPAddr), "rosetta_xds_nacks_total")
	bad := unknownCodec(testutil.FreePort(t))
	c.MustKubectl(t, bad, "apply", "-f", "-")
	c.MustKubectl(t, chaosRouter("v1"), "apply", "-f", "-")
	testutil.Eventually(t, 10*time.Second, "a NACK from each proxy on the controller", func() bool {
		return metricSum(scrape(t, ctrl.HTTPAddr), "rosetta_xds_nacks_total") >= nacks+float64(len(proxies))
	})
	for _, p := range proxies {
		if n := metricValue(scrape(t, p.Admin), `rosetta_config_updates_total{result="rejected"}`); n == 0 {
			t.Errorf("%s counts no rejected config update", p.Name)
		}
	}
	testutil.Eventually(t, 30*time.Second, "Programmed=False naming both proxies", func() bool {
		st, reason, msg, _ := condition(t, c, chaosNS, "greeter", "Programmed")
		return st == "False" && reason == "RefusedByProxy" && strings.Contains(msg, "chaos-a") && strings.Contains(msg, "chaos-b") &&
			strings.Contains(msg, `"inhouse" is not a codec this proxy was built with`)
	})
	if st, _, msg, _ := condition(t, c, chaosNS, "greeter", "Accepted"); st != "True" {
		t.Errorf("Accepted = %s (%s), want True: the controller accepts the config", st, msg)
	}
	onlyFrom(t, l, "v2", "config refused")

	c.MustKubectl(t, bad, "delete", "-f", "-")
	settles(t, l, "v1", "echo on v1 once the refused service is gone")
	onlyFrom(t, l, "v1", "config accepted again")
	testutil.Eventually(t, 30*time.Second, "the Programmed condition gone", func() bool {
		_, _, _, ok := condition(t, c, chaosNS, "greeter", "Programmed")
		return !ok
	})
	l.noFailures(t, from, "refused config")
}

// drainProxy stops proxy p with SIGTERM under load. Its drain contract:
// it stops accepting, answers the calls in flight, then closes each
// connection. dubbo-go v3.3.0 has no go-away signal on the dubbo protocol
// and keeps picking the closed connection's invoker; its failover cluster
// retries those calls on the other proxy. So no call may fail, and the
// other proxy keeps answering.
func drainProxy(t *testing.T, l *chaosLoad, p *kubeenv.Proxy) {
	t.Helper()
	term := time.Now()
	p.Stop(10 * time.Second)
	t.Logf("%s drained in %v", p.Name, time.Since(term).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	for _, c := range failed(l.since(term.Add(-10 * time.Second))) {
		t.Errorf("drain: a %s call failed %v after the SIGTERM: %v", c.method, c.start.Sub(term), c.err)
	}
	calls := l.since(term)
	if ok := len(calls) - len(failed(calls)); ok < 100 {
		t.Errorf("drain: %d calls answered in the 2 s after it, want the other proxy's share of the steady rate", ok)
	}
}
