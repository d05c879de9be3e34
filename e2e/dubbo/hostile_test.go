package dubbo

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

// The hostile-client test runs the proxy binary, as users do, so its
// memory is its own: many connections each send all but the last KiB of a
// 4 MiB Dubbo request, others trickle a request a byte at a time, and a
// real dubbo-go consumer keeps calling through the same listener.
const (
	hostileBudget   = 64 << 20
	hostileFrame    = 4 << 20
	hostileConns    = 200
	trickleConns    = 50
	hostileDeadline = 2 * time.Second // --frame-timeout
	// hostileMemory is the proxy's --memory-limit: the budget, and room for
	// the proxy's own heap and the garbage of refused and grown buffers,
	// which the collector takes back as the heap nears the limit.
	hostileMemory = hostileBudget + 48<<20
	// softSlack is how far RSS may run past the limit: the limit is soft,
	// and Go's collector lets the heap pass it rather than take more than
	// half the CPU, which 200 connections writing at once on two cores
	// would make it (peaks of 20-40 MiB over were seen). Without the
	// budget the same flood takes over 800 MiB.
	softSlack = 64 << 20
	// hostileWait bounds what the test waits for under attack: a call's
	// answer, a hostile connection's close. A flood of 800 MB on two cores
	// already busy with other work (a load of 20) slows every one of them
	// by seconds, and a slow answer or close is not the failure looked for:
	// a refused call fails at once, a connection never closed never is.
	hostileWait = time.Minute
)

func TestHostileClientsCannotInflateTheProxy(t *testing.T) {
	provider := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	// The route's time is the client's, so a slow answer counts as one.
	px := startProxyProcess(t, proxyConfig(t, []obj{route("all", nil, "a", hostileWait)}, cluster(t, "a", provider.Addr())),
		"--buffer-budget", strconv.Itoa(hostileBudget), "--frame-timeout", hostileDeadline.String(),
		"--memory-limit", strconv.Itoa(hostileMemory))
	c := dubbokit.NewConsumer(t, px.addr, dubbokit.ConsumerConfig{Version: version, Timeout: hostileWait})
	for i := range 50 { // warm up, then measure the baseline
		if _, err := c.Echo(context.Background(), fmt.Sprint(i)); err != nil {
			t.Fatalf("a call before the attack: %v", err)
		}
	}
	baseline, err := px.rss()
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	stopAll := sync.OnceFunc(func() { close(stop) })
	defer stopAll()
	var peak atomic.Int64
	sampled := sampleRSS(px, &peak, stop)
	var calls, failed, slowest atomic.Int64
	called := callSteadily(t, c, &calls, &failed, &slowest, stop)

	began := time.Now()
	trickles := trickle(t, px.addr, trickleConns)
	flood(t, px.addr, hostileConns)
	for _, tc := range trickles {
		if !closedWithin(tc, hostileWait) {
			t.Fatal("a connection trickling a request was still open past --frame-timeout")
		}
	}
	if took := time.Since(began); took < hostileDeadline {
		t.Fatalf("the trickling connections were closed after %v, before --frame-timeout", took)
	}
	stopAll()
	<-sampled
	<-called

	if failed.Load() > 0 || calls.Load() == 0 {
		t.Fatalf("the dubbo-go consumer: %d of %d calls failed during the attack", failed.Load(), calls.Load())
	}
	if grew := peak.Load() - baseline; grew > hostileMemory+softSlack {
		t.Fatalf("RSS grew by %d MiB under attack (baseline %d MiB), past the %d MiB memory limit (budget %d MiB) and %d MiB of slack",
			grew>>20, baseline>>20, hostileMemory>>20, hostileBudget>>20, softSlack>>20)
	} else {
		t.Logf("RSS %d MiB at rest, at most %d MiB under attack (budget %d MiB); %d calls answered meanwhile, the slowest in %v",
			baseline>>20, peak.Load()>>20, hostileBudget>>20, calls.Load(), time.Duration(slowest.Load()))
	}
	m := px.metrics(t)
	for _, limit := range []string{"buffer_budget", "frame_timeout"} {
		if n := metricValue(m, `rosetta_downstream_connections_closed_by_limit_total{limit="`+limit+`",listener="dubbo"}`); n < 1 {
			t.Errorf("no connection counted as closed by %s:\n%s", limit, m)
		}
	}
	if n := metricValue(m, "rosetta_buffer_budget_bytes_in_use"); n != 0 {
		t.Errorf("%v bytes of the budget still in use once every hostile connection is gone", n)
	}
	if _, err := c.Echo(context.Background(), "after"); err != nil {
		t.Fatalf("a call after the attack: %v", err)
	}
}

// proxyProcess is a rosetta-proxy binary the test runs.
type proxyProcess struct {
	p     *testutil.Process
	addr  string
	admin string
}

// proxyWait bounds the binary's start.
const proxyWait = 30 * time.Second

// startProxyProcess builds and runs rosetta-proxy with cfg (whose listener
// port it sets) and flags, until the test ends. The listener's port must be
// in the config, so testutil.OnFreePorts picks it, and picks again if
// another process took it first; the admin server takes port 0 and the
// proxy logs the port it got.
func startProxyProcess(t *testing.T, cfg string, flags ...string) *proxyProcess {
	t.Helper()
	dir := t.TempDir()
	bin := testutil.GoBuild(t, filepath.Join("..", ".."), "./cmd/rosetta-proxy")
	return testutil.OnFreePorts(t, 1, func(ports []int) (*proxyProcess, error) {
		port := strconv.Itoa(ports[0])
		file := filepath.Join(dir, "proxy-"+port+".json")
		if err := os.WriteFile(file, []byte(strings.Replace(cfg, `"port_value":0`, `"port_value":`+port, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		px := &proxyProcess{addr: "127.0.0.1:" + port}
		px.p = testutil.StartT(t, testutil.Command{Name: "rosetta-proxy", Path: bin,
			Args: append([]string{"--config", file, "--admin", "127.0.0.1:0", "--log-level", "info"}, flags...)})
		var err error
		if px.admin, err = px.p.LoggedAddr(proxyWait, "rosetta-proxy started", "admin"); err != nil {
			return px, err
		}
		return px, px.p.Ready(proxyWait, "ready", testutil.HTTPOK("http://"+px.admin+"/ready"))
	})
}

// rss is the process's resident memory, in bytes.
func (px *proxyProcess) rss() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", px.p.Pid()))
	if err != nil {
		return 0, fmt.Errorf("read the proxy's RSS: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if kb, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(kb, "kB")), 10, 64)
			return n << 10, err
		}
	}
	return 0, errors.New("no VmRSS in the proxy's /proc status")
}

func (px *proxyProcess) metrics(t *testing.T) string {
	t.Helper()
	return testutil.Get(t, "http://"+px.admin+"/metrics")
}

// metricValue is the value of the series named exactly, -1 when absent.
func metricValue(metrics, series string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// sampleRSS records the proxy's highest RSS in peak until stop closes.
func sampleRSS(px *proxyProcess, peak *atomic.Int64, stop chan struct{}) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if n, err := px.rss(); err == nil && n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return done
}

// callSteadily calls through c until stop closes, counting the calls and
// the failures.
func callSteadily(t *testing.T, c *dubbokit.Consumer, calls, failed, slowest *atomic.Int64, stop chan struct{}) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			want := fmt.Sprint("steady ", i)
			began := time.Now()
			got, err := c.Echo(context.Background(), want)
			if took := int64(time.Since(began)); took > slowest.Load() {
				slowest.Store(took)
			}
			calls.Add(1)
			if err != nil || !strings.HasSuffix(got, want) {
				t.Logf("call %d: %q, %v", i, got, err)
				failed.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return done
}

// requestHead is a Dubbo request header claiming body bytes.
func requestHead(id uint64, body int) []byte {
	h := []byte{0xda, 0xbb, 0xc2, 0}
	h = binary.BigEndian.AppendUint64(h, id)
	return binary.BigEndian.AppendUint32(h, uint32(body))
}

// flood opens n connections at once, each sending all but the last KiB of
// a hostileFrame request, and waits until the proxy has closed every one:
// those past the budget at once, the rest at --frame-timeout.
func flood(t *testing.T, addr string, n int) {
	body := make([]byte, hostileFrame-1024)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Errorf("flood connection %d: %v", i, err)
				return
			}
			defer nc.Close()
			// A write may fail: the proxy closes what passes the budget.
			_, _ = nc.Write(append(requestHead(uint64(i), hostileFrame), body...))
			if !closedWithin(nc, hostileWait) {
				t.Errorf("flood connection %d was still open past --frame-timeout", i)
			}
		}()
	}
	wg.Wait()
}

// trickle opens n connections that each send a request's head and then a
// byte every 100 ms, until the proxy closes them.
func trickle(t *testing.T, addr string, n int) []net.Conn {
	var conns []net.Conn
	for i := range n {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		if _, err := nc.Write(requestHead(uint64(i), 1000)); err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				time.Sleep(100 * time.Millisecond)
				if _, err := nc.Write([]byte{0}); err != nil {
					return
				}
			}
		}()
		conns = append(conns, nc)
	}
	return conns
}

// closedWithin reports whether the peer closes nc within d.
func closedWithin(nc net.Conn, d time.Duration) bool {
	_ = nc.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, nc)
	var ne net.Error
	return !(err != nil && errors.As(err, &ne) && ne.Timeout())
}

// withListener sets fields of a proxyConfig's listener and of its filter.
func withListener(t *testing.T, cfg string, listener, filter obj) string {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal([]byte(cfg), &c); err != nil {
		t.Fatal(err)
	}
	l := c["listeners"].([]any)[0].(map[string]any)
	for k, v := range listener {
		l[k] = v
	}
	f := l["filter_chains"].([]any)[0].(map[string]any)["filters"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)
	for k, v := range filter {
		f[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRequestsCutShortByALimitGetADubboError(t *testing.T) {
	provider := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	cfg := withListener(t, proxyConfig(t, []obj{route("all", nil, "a", routeTimeout)}, cluster(t, "a", provider.Addr())),
		obj{"per_connection_buffer_limit_bytes": 32 << 10}, obj{"frame_timeout": "0.5s"})
	addr := dubbokit.OnFreshPort(t, "proxy", func() (string, string) {
		a := proxytest.Start(t, cfg).Addr(t, listenerName)
		return a, a
	})
	// dubbo-go's own consumer, with an argument over the listener's limit (and under its own, 100 KiB):
	// the proxy refuses it from its header, with Dubbo's bad request.
	c := dubbokit.NewConsumer(t, addr, consumerConfig())
	_, err := c.Echo(context.Background(), strings.Repeat("x", 80<<10))
	if err == nil || !strings.Contains(err.Error(), "buffer limit") {
		t.Fatalf("an argument of 80 KiB through a 32 KiB listener: %v, want the proxy's Dubbo error naming the limit", err)
	}
	// A request that stops halfway gets the same answer, with its id,
	// once frame_timeout has passed.
	raw := dubbokit.DialRaw(t, addr)
	req, err := dubbokit.EncodeRequest(7, dubbokit.Call{Method: dubbokit.MethodEcho, Arg: "cut short"})
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Write(req[:len(req)/2]); err != nil {
		t.Fatal(err)
	}
	resp, err := raw.Read(5 * time.Second)
	if err != nil || resp.ID != 7 || resp.Status != statusBadRequest || !strings.Contains(resp.Err, "did not arrive whole") {
		t.Fatalf("a request cut short: %+v, %v; want id 7, status %d and the proxy's reason", resp, err, statusBadRequest)
	}
	if err := raw.WaitClosed(5 * time.Second); err != nil {
		t.Fatalf("the connection after the answer: %v", err)
	}
}

// statusBadRequest is Dubbo's BAD_REQUEST status byte.
const statusBadRequest = 40
