package dubbo

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// These tests put a Rosetta proxy (in-process, static config) between real
// dubbo-go v3.3.0 consumers and providers.

const (
	version = "1.0.0"
	// routeTimeout is the proxy's time limit for each call.
	routeTimeout = 5 * time.Second
	// clientTimeout is far above every error the proxy should give, so an
	// error that arrives sooner came from the proxy, not the client's timer.
	clientTimeout = 15 * time.Second
)

func consumerConfig() dubbokit.ConsumerConfig {
	return dubbokit.ConsumerConfig{Version: version, Timeout: clientTimeout}
}

// twoProviders starts providers "a" and "b" of the same service.
func twoProviders(t *testing.T) (a, b *dubbokit.Provider) {
	a = dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	b = dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "b", Version: version})
	return a, b
}

func TestProxyRoutesByMethodAndAttachment(t *testing.T) {
	a, b := twoProviders(t)
	addr := startProxy(t, []obj{
		route("canary", map[string]string{"env": "canary"}, "b", routeTimeout),
		route("say-hello", map[string]string{"method": dubbokit.MethodSayHello}, "a", routeTimeout),
		route("default", nil, "b", routeTimeout),
	}, cluster(t, "a", a.Addr()), cluster(t, "b", b.Addr()))
	c := dubbokit.NewConsumer(t, addr, consumerConfig())

	plain := context.Background()
	canary := dubbokit.WithAttachments(plain, map[string]string{"env": "canary"})
	other := dubbokit.WithAttachments(plain, map[string]string{"env": "prod"})
	for _, tc := range []struct {
		name        string
		ctx         context.Context
		method, arg string
		want        string
	}{
		{"sayHello goes to a", plain, dubbokit.MethodSayHello, "x", "a: hello x"},
		{"echo goes to b", plain, dubbokit.MethodEcho, "y", "b: y"},
		{"canary sayHello goes to b", canary, dubbokit.MethodSayHello, "x", "b: hello x"},
		{"non-canary sayHello goes to a", other, dubbokit.MethodSayHello, "x", "a: hello x"},
		// The provider reads the attachment: it crossed the proxy intact.
		{"attachments reach the provider", canary, dubbokit.MethodAttachment, "env", "b: canary"},
		{"other attachment values reach the provider", other, dubbokit.MethodAttachment, "env", "b: prod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 4 { // repeat: no endpoint choice may blur the route
				got, err := c.Call(tc.ctx, tc.method, tc.arg)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if got != tc.want {
					t.Fatalf("call %d = %q, want %q", i, got, tc.want)
				}
			}
		})
	}
}

// Dubbo's own service identity routes too: version (from the request body)
// and group (an attachment dubbo-go sends for a grouped reference).
func TestProxyRoutesByVersionAndGroup(t *testing.T) {
	v1 := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "v1", Version: "1.0.0"})
	v2 := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "v2", Version: "2.0.0"})
	gray := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "gray", Version: "1.0.0", Group: "gray"})
	addr := startProxy(t, []obj{
		route("v2", map[string]string{"interface": dubbokit.Greeter, "version": "2.0.0"}, "v2", routeTimeout),
		route("gray", map[string]string{"group": "gray"}, "gray", routeTimeout),
		route("default", nil, "v1", routeTimeout),
	}, cluster(t, "v1", v1.Addr()), cluster(t, "v2", v2.Addr()), cluster(t, "gray", gray.Addr()))

	ctx := context.Background()
	for _, tc := range []struct {
		cfg  dubbokit.ConsumerConfig
		want string
	}{
		{dubbokit.ConsumerConfig{Version: "1.0.0"}, "v1: hello x"},
		{dubbokit.ConsumerConfig{Version: "2.0.0"}, "v2: hello x"},
		{dubbokit.ConsumerConfig{Version: "1.0.0", Group: "gray"}, "gray: hello x"},
	} {
		tc.cfg.Timeout = clientTimeout
		c := dubbokit.NewConsumer(t, addr, tc.cfg)
		// The provider checks version and group: a wrong pick would fail.
		if got, err := c.SayHello(ctx, "x"); err != nil || got != tc.want {
			t.Errorf("consumer %+v: sayHello = %q, %v; want %q", tc.cfg, got, err, tc.want)
		}
	}
}

// A client's heartbeat gets a heartbeat answer with its id (dubbo-go clients
// send one every 30s on each connection and drop connections that miss them).
func TestProxyAnswersHeartbeats(t *testing.T) {
	a, _ := twoProviders(t)
	addr := startProxy(t, []obj{route("all", nil, "a", routeTimeout)}, cluster(t, "a", a.Addr()))
	r := dubbokit.DialRaw(t, addr)
	if err := r.Heartbeat(42); err != nil {
		t.Fatal(err)
	}
	resp, err := r.Read(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Heartbeat || resp.ID != 42 || resp.Status != dubbokit.StatusOK {
		t.Errorf("heartbeat answer = %+v, want an OK heartbeat response with id 42", resp)
	}
}

func TestProxyNoRouteIsDubboError(t *testing.T) {
	a, _ := twoProviders(t)
	addr := startProxy(t, []obj{
		route("say-hello", map[string]string{"method": dubbokit.MethodSayHello}, "a", routeTimeout),
	}, cluster(t, "a", a.Addr()))
	c := dubbokit.NewConsumer(t, addr, consumerConfig())
	ctx := context.Background()

	start := time.Now()
	_, err := c.Echo(ctx, "x")
	took := time.Since(start)
	if err == nil {
		t.Fatal("a call no route matches succeeded")
	}
	if took > time.Second {
		t.Errorf("the no-route error took %v; it must not wait for a timeout", took)
	}
	if !strings.Contains(err.Error(), "no route") {
		t.Errorf("error %q does not give the no-route reason", err)
	}
	t.Logf("dubbo-go sees: %v (after %v)", err, took.Round(time.Millisecond))

	// The error is a Dubbo response on a connection that stays usable.
	if got, err := c.SayHello(ctx, "x"); err != nil || got != "a: hello x" {
		t.Errorf("sayHello after the no-route error = %q, %v; want %q", got, err, "a: hello x")
	}
	r := dubbokit.DialRaw(t, addr)
	if err := r.Send(5, dubbokit.Call{Version: version, Method: dubbokit.MethodEcho, Arg: "x"}); err != nil {
		t.Fatal(err)
	}
	resp, err := r.Read(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ID != 5 || resp.Status != dubbokit.StatusServiceNotFound || !strings.Contains(resp.Err, "no route") {
		t.Errorf("raw no-route response = %+v, want id 5, status %d, a no-route message",
			resp, dubbokit.StatusServiceNotFound)
	}
}

// A provider killed with calls in flight: those calls, and only those, fail,
// and soon; calls in flight on the other provider complete; later calls go
// to the survivor.
func TestProxyKilledProviderFailsOnlyItsCallsInFlight(t *testing.T) {
	a, b := twoProviders(t)
	addr := startProxy(t, []obj{route("all", nil, "both", routeTimeout)},
		cluster(t, "both", a.Addr(), b.Addr()))
	c := dubbokit.NewConsumer(t, addr, consumerConfig())
	ctx := context.Background()

	type result struct {
		arg, answer string
		err         error
		took        time.Duration
	}
	const inFlight = 8
	results := make(chan result, inFlight)
	var killedAt atomic.Int64
	for i := range inFlight {
		go func() {
			arg := fmt.Sprintf("h%d", i)
			got, err := c.Call(ctx, dubbokit.MethodHold, arg)
			results <- result{arg, got, err, time.Since(time.Unix(0, killedAt.Load()))}
		}()
	}
	// Round robin spreads the holds over both providers.
	testutil.MustPoll(t, 5*time.Second, "the holds on both providers", func() (bool, error) {
		ha, hb := a.Holding(), b.Holding()
		return ha+hb >= inFlight && ha > 0 && hb > 0, fmt.Errorf("holding a=%d b=%d, want %d in all on both", ha, hb, inFlight)
	})
	onA, onB := a.Holding(), b.Holding()
	killedAt.Store(time.Now().UnixNano())
	a.Kill()

	// a's calls fail first (b's still hold), each well before any timeout.
	for range onA {
		select {
		case r := <-results:
			if r.err == nil {
				t.Errorf("%s answered %q although its provider was killed", r.arg, r.answer)
				continue
			}
			if r.took > 3*time.Second {
				t.Errorf("%s failed %v after the kill; the proxy must fail it at once", r.arg, r.took)
			}
			t.Logf("%s failed %v after the kill: %v", r.arg, r.took.Round(time.Millisecond), r.err)
		case <-time.After(5 * time.Second):
			t.Fatalf("calls in flight on the killed provider still wait 5s after the kill")
		}
	}
	b.Release()
	for range onB {
		select {
		case r := <-results:
			if r.err != nil || r.answer != "b: "+r.arg {
				t.Errorf("%s on the healthy provider = %q, %v; want %q", r.arg, r.answer, r.err, "b: "+r.arg)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("calls in flight on the healthy provider still wait 5s after their release")
		}
	}

	// Later calls all go to the survivor.
	for i := range 10 {
		arg := fmt.Sprintf("after%d", i)
		if got, err := c.Echo(ctx, arg); err != nil || got != "b: "+arg {
			t.Errorf("call %d after the kill = %q, %v; want %q", i, got, err, "b: "+arg)
		}
	}
}

// Garbage on one downstream connection closes that connection only; good
// calls on other connections, before, during and after, all succeed.
func TestProxyMalformedFrameClosesOnlyThatConnection(t *testing.T) {
	a, _ := twoProviders(t)
	addr := startProxy(t, []obj{route("all", nil, "a", routeTimeout)}, cluster(t, "a", a.Addr()))
	c := dubbokit.NewConsumer(t, addr, consumerConfig())
	idle := dubbokit.DialRaw(t, addr) // a quiet connection that must survive
	ctx := context.Background()

	var (
		stop   = make(chan struct{})
		wg     sync.WaitGroup
		calls  atomic.Int64
		failed atomic.Int64
		mu     sync.Mutex
		errs   []error
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				arg := fmt.Sprintf("w%d-%d", w, i)
				got, err := c.Echo(ctx, arg)
				calls.Add(1)
				if err == nil && got != "a: "+arg {
					err = fmt.Errorf("echo(%s) = %q", arg, got)
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	waitCalls := func(n int64) {
		t.Helper()
		testutil.MustPoll(t, 5*time.Second, fmt.Sprintf("%d good calls", n), func() (bool, error) {
			got := calls.Load()
			return got >= n, fmt.Errorf("%d good calls made", got)
		})
	}
	waitCalls(50)

	bad := dubbokit.DialRaw(t, addr)
	// A good request first, answered, so the connection was a working one.
	if err := bad.Send(1, dubbokit.Call{Version: version, Method: dubbokit.MethodEcho, Arg: "first"}); err != nil {
		t.Fatal(err)
	}
	if resp, err := bad.Read(3 * time.Second); err != nil || resp.Value != "a: first" {
		t.Fatalf("good call before the garbage = %+v, %v", resp, err)
	}
	// Bad magic, then a header-sized tail so no reader waits for more.
	if err := bad.Write([]byte("\x00\x01garbage, not dubbo")); err != nil {
		t.Fatal(err)
	}
	if err := bad.WaitClosed(5 * time.Second); err != nil {
		t.Fatalf("the connection that sent garbage: %v", err)
	}
	waitCalls(calls.Load() + 50)
	close(stop)
	wg.Wait()

	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d good calls failed; first: %v", n, calls.Load(), errs[0])
	}
	if err := idle.Send(2, dubbokit.Call{Version: version, Method: dubbokit.MethodEcho, Arg: "idle"}); err != nil {
		t.Fatal(err)
	}
	if resp, err := idle.Read(3 * time.Second); err != nil || resp.ID != 2 || resp.Value != "a: idle" {
		t.Errorf("the idle connection after the garbage: %+v, %v", resp, err)
	}
	t.Logf("%d good calls, none failed", calls.Load())
}

// Many concurrent calls from dubbo-go consumers and from raw connections that
// all use the same request ids, spread over two providers, each get their
// own answer: the proxy rewrites ids on the shared upstream connections and
// restores them on the way back.
func TestProxyMultiplexesManyConsumers(t *testing.T) {
	a, b := twoProviders(t)
	addr := startProxy(t, []obj{
		route("say-hello", map[string]string{"method": dubbokit.MethodSayHello}, "a", routeTimeout),
		route("default", nil, "b", routeTimeout),
	}, cluster(t, "a", a.Addr()), cluster(t, "b", b.Addr()))

	var consumers []*dubbokit.Consumer
	for range 4 {
		consumers = append(consumers, dubbokit.NewConsumer(t, addr, consumerConfig()))
	}
	raws := make([]*dubbokit.RawConn, 8)
	for i := range raws {
		raws[i] = dubbokit.DialRaw(t, addr)
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		checkConcurrentEchoes(t, consumers, 100, func(string) string { return "b" })
	}()
	go func() {
		defer wg.Done()
		checkRawPipelines(t, raws, 100)
	}()
	wg.Wait()
	if a.Calls() == 0 || b.Calls() == 0 {
		t.Errorf("calls per provider: a=%d b=%d; both must have served", a.Calls(), b.Calls())
	}
}

// checkRawPipelines sends n requests with ids 1..n on every connection
// without waiting, alternating sayHello (provider a) and echo (provider b),
// and checks every answer against the request its id names.
func checkRawPipelines(t *testing.T, raws []*dubbokit.RawConn, n int) {
	var wg sync.WaitGroup
	for ci, r := range raws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := map[int64]string{}
			for id := int64(1); id <= int64(n); id++ {
				arg := fmt.Sprintf("r%d-%d", ci, id)
				call := dubbokit.Call{Version: version, Method: dubbokit.MethodEcho, Arg: arg}
				want[id] = "b: " + arg
				if id%2 == 0 {
					call.Method = dubbokit.MethodSayHello
					want[id] = "a: hello " + arg
				}
				if err := r.Send(id, call); err != nil {
					t.Errorf("conn %d: send %d: %v", ci, id, err)
					return
				}
			}
			for range n {
				resp, err := r.Read(10 * time.Second)
				if err != nil {
					t.Errorf("conn %d: read with %d answers missing: %v", ci, len(want), err)
					return
				}
				w, ok := want[resp.ID]
				if !ok {
					t.Errorf("conn %d: answer for id %d, which is not pending", ci, resp.ID)
					return
				}
				delete(want, resp.ID)
				if resp.Err != "" || resp.Value != w {
					t.Errorf("conn %d: id %d answered %q (err %q), want %q", ci, resp.ID, resp.Value, resp.Err, w)
				}
			}
		}()
	}
	wg.Wait()
}
