package dubbo

import (
	"context"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

// A proxy that drains (here: it shuts down, as in a rolling restart)
// writes Dubbo's readonly event on every caller connection, answers the
// calls in flight and then closes each connection.
//
// dubbo-go v3.3.0 does not act on the event: its getty client answers it
// as a heartbeat and keeps sending on the connection (a Java consumer
// would mark the channel read-only instead). The test pins that: the
// event is well-formed (dubbo-go keeps the connection, which a frame it
// could not read would end), a call sent after the event on the draining
// connection is still answered, and the call in flight when the drain
// began is answered, not failed.
func TestProxyDrainSendsReadonlyEvent(t *testing.T) {
	a := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	routes := []obj{route("all", nil, "a", routeTimeout)}
	clusters := []obj{cluster(t, "a", a.Addr())}
	cfg := proxyConfig(t, routes, clusters...)
	first := dubbokit.OnFreshPort(t, "proxy", func() (*proxytest.Proxy, string) {
		p := proxytest.Start(t, cfg)
		return p, p.Addr(t, listenerName)
	})
	addr := first.Addr(t, listenerName)
	ctx := context.Background()

	c := dubbokit.NewConsumer(t, addr, consumerConfig())
	if got, err := c.Echo(ctx, "before"); err != nil || got != "a: before" {
		t.Fatalf("echo before the drain = %q, %v", got, err)
	}
	raw := dubbokit.DialRaw(t, addr)
	// The proxy has taken raw's connection once it answers on it.
	if err := raw.Heartbeat(1); err != nil {
		t.Fatal(err)
	}
	if resp, err := raw.Read(3 * time.Second); err != nil || !resp.Heartbeat {
		t.Fatalf("heartbeat answer = %+v, %v", resp, err)
	}

	held := holdCall(t, c, a)

	drained := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		drained <- first.Shutdown(sctx)
	}()

	// raw has nothing in flight: the readonly event, then the close.
	resp, err := raw.Read(5 * time.Second)
	if err != nil || !resp.Readonly {
		t.Fatalf("first frame after the drain began = %+v, %v; want the readonly event", resp, err)
	}
	if err := raw.WaitClosed(5 * time.Second); err != nil {
		t.Fatalf("a connection with nothing in flight after the readonly event: %v", err)
	}

	// The consumer's connection stays open while its call is in flight,
	// and dubbo-go goes on sending on it: the proxy still answers.
	if got, err := c.Echo(ctx, "during"); err != nil || got != "a: during" {
		t.Errorf("echo on the draining connection = %q, %v; want %q", got, err, "a: during")
	}
	a.Release()
	held.answered(t, "when the drain began")
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy still drains 10s after its last call was answered")
	}
}

// A config update that removes a provider's endpoint (a pod scaled down)
// lets the call in flight to it finish: the update sends new calls to the
// provider left, the held call is answered by the removed provider once it
// is released, and the proxy's connection to that provider then closes.
func TestProxyRemovedProviderFinishesCallsInFlight(t *testing.T) {
	a := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	b := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "b", Version: version})
	routes := []obj{route("all", nil, "greeter", routeTimeout)}
	p := dubbokit.OnFreshPort(t, "proxy", func() (*proxytest.Proxy, string) {
		p := proxytest.Start(t, proxyConfig(t, routes, cluster(t, "greeter", a.Addr())))
		return p, p.Addr(t, listenerName)
	})
	ctx := context.Background()
	c := dubbokit.NewConsumer(t, p.Addr(t, listenerName), consumerConfig())
	if got, err := c.Echo(ctx, "before"); err != nil || got != "a: before" {
		t.Fatalf("echo before the update = %q, %v", got, err)
	}
	held := holdCall(t, c, a)
	callsToA := a.Calls()

	boot, err := config.Parse([]byte(proxyConfig(t, routes, cluster(t, "greeter", b.Addr()))))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(boot.Resources); err != nil {
		t.Fatalf("the update removing a: %v", err)
	}
	if got, err := c.Echo(ctx, "after"); err != nil || got != "b: after" {
		t.Fatalf("echo after the update = %q, %v; want %q", got, err, "b: after")
	}
	if n := a.Calls(); n != callsToA {
		t.Fatalf("the removed provider got %d new calls", n-callsToA)
	}
	if a.Conns() != 1 {
		t.Fatalf("the removed provider has %d connections while a call is in flight, want the proxy's 1", a.Conns())
	}

	a.Release()
	held.answered(t, "when its provider was removed")
	testutil.Eventually(t, 10*time.Second, "the proxy's connection to the removed provider closed", func() bool { return a.Conns() == 0 })
}

// heldCall is a hold call through a consumer, blocked in provider a
// until a.Release.
type heldCall chan heldAnswer

type heldAnswer struct {
	got string
	err error
}

// holdCall starts a hold call through c and waits until a holds it.
func holdCall(t *testing.T, c *dubbokit.Consumer, a *dubbokit.Provider) heldCall {
	t.Helper()
	held := make(heldCall, 1)
	go func() {
		got, err := c.Call(context.Background(), dubbokit.MethodHold, "held")
		held <- heldAnswer{got, err}
	}()
	if err := a.WaitHolding(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return held
}

// answered fails t unless the call, released, got a's answer.
func (h heldCall) answered(t *testing.T, when string) {
	t.Helper()
	select {
	case r := <-h:
		if r.err != nil || r.got != "a: held" {
			t.Fatalf("call in flight %s = %q, %v; want %q", when, r.got, r.err, "a: held")
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("call in flight %s unanswered 10s after its release", when)
	}
}
