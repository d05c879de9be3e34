package dubbo

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
)

// These tests prove the kit itself: a dubbo-go consumer calling dubbo-go
// providers directly, with no proxy. The proxy tests rely on each behaviour.

func TestKitCallsProviderDirectly(t *testing.T) {
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "v1", Version: "1.0.0", Group: "blue"})
	c := dubbokit.NewConsumer(t, p.Addr(), dubbokit.ConsumerConfig{Version: "1.0.0", Group: "blue"})
	ctx := context.Background()

	for _, tc := range []struct{ method, arg, want string }{
		{dubbokit.MethodSayHello, "x", "v1: hello x"},
		{dubbokit.MethodEcho, "ping", "v1: ping"},
		{dubbokit.MethodAttachment, "absent", "v1: "},
	} {
		got, err := c.Call(ctx, tc.method, tc.arg)
		if err != nil {
			t.Fatalf("%s(%q): %v", tc.method, tc.arg, err)
		}
		if got != tc.want {
			t.Errorf("%s(%q) = %q, want %q", tc.method, tc.arg, got, tc.want)
		}
	}
}

func TestKitSendsContextAttachments(t *testing.T) {
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "v1"})
	c := dubbokit.NewConsumer(t, p.Addr(), dubbokit.ConsumerConfig{})
	ctx := dubbokit.WithAttachments(context.Background(), map[string]string{"env": "canary"})
	got, err := c.Call(ctx, dubbokit.MethodAttachment, "env")
	if err != nil {
		t.Fatal(err)
	}
	if got != "v1: canary" {
		t.Errorf("attachment(env) = %q, want %q", got, "v1: canary")
	}
}

func TestKitReportsServiceErrors(t *testing.T) {
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "v1", Version: "1.0.0"})
	ctx := context.Background()

	c := dubbokit.NewConsumer(t, p.Addr(), dubbokit.ConsumerConfig{Version: "1.0.0"})
	if _, err := c.Call(ctx, dubbokit.MethodFail, "x"); err == nil || !strings.Contains(err.Error(), "v1: failed x") {
		t.Errorf("fail(x) error = %v, want one naming %q", err, "v1: failed x")
	}

	wrong := dubbokit.NewConsumer(t, p.Addr(), dubbokit.ConsumerConfig{Version: "2.0.0"})
	if _, err := wrong.SayHello(ctx, "x"); err == nil || !strings.Contains(err.Error(), "service not found") {
		t.Errorf("call for version 2.0.0 error = %v, want service not found", err)
	}
}

// Two providers of the same service in one process must each answer for
// themselves (dubbo-go's own exporter cannot do this).
func TestKitProvidersOfOneServiceStaySeparate(t *testing.T) {
	a := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a"})
	b := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "b"})
	ctx := context.Background()
	for _, p := range []*dubbokit.Provider{a, b} {
		c := dubbokit.NewConsumer(t, p.Addr(), dubbokit.ConsumerConfig{})
		got, err := c.Echo(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		if want := p.Name() + ": x"; got != want {
			t.Errorf("echo via %s = %q, want %q", p.Addr(), got, want)
		}
	}
}

// A killed provider fails the calls in flight on it. dubbo-go v3.3.0's client
// does not fail pending calls when their connection drops: they end at their
// timeout. Through a proxy the client's connection stays up, and the proxy
// must answer them with an error instead.
func TestKitKillFailsCallsInFlight(t *testing.T) {
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "v1"})
	const timeout = time.Second
	c := dubbokit.NewConsumer(t, p.Addr(), dubbokit.ConsumerConfig{Timeout: timeout})
	ctx := context.Background()

	errs := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, dubbokit.MethodHold, "x")
		errs <- err
	}()
	if err := p.WaitHolding(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.Kill()
	select {
	case err := <-errs:
		if err == nil {
			t.Fatal("call in flight on a killed provider succeeded")
		}
		t.Logf("in-flight call failed %v after the kill: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(timeout + 5*time.Second):
		t.Fatalf("call in flight on a killed provider still waits %v after the kill", timeout+5*time.Second)
	}
	start = time.Now()
	if _, err := c.Echo(ctx, "after"); err == nil {
		t.Error("call to a killed provider succeeded")
	} else {
		t.Logf("later call failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
}

func TestKitManyConcurrentCalls(t *testing.T) {
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "v1"})
	var consumers []*dubbokit.Consumer
	for range 4 {
		consumers = append(consumers, dubbokit.NewConsumer(t, p.Addr(), dubbokit.ConsumerConfig{}))
	}
	checkConcurrentEchoes(t, consumers, 50, func(string) string { return "v1" })
}

// checkConcurrentEchoes has every consumer make perConsumer concurrent echo
// calls with distinct arguments, and checks each answer is its own call's,
// from the provider want names.
func checkConcurrentEchoes(t *testing.T, consumers []*dubbokit.Consumer, perConsumer int, want func(arg string) string) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, len(consumers)*perConsumer)
	for ci, c := range consumers {
		for i := range perConsumer {
			wg.Add(1)
			go func() {
				defer wg.Done()
				arg := fmt.Sprintf("c%d-%d", ci, i)
				got, err := c.Echo(ctx, arg)
				if err != nil {
					errs <- fmt.Errorf("echo(%s): %w", arg, err)
					return
				}
				if w := want(arg) + ": " + arg; got != w {
					errs <- fmt.Errorf("echo(%s) = %q, want %q", arg, got, w)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if n > 10 {
		t.Errorf("... %d failed calls in all", n)
	}
}

func TestKitRawConnCallsProvider(t *testing.T) {
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "v1", Version: "1.0.0"})
	r := dubbokit.DialRaw(t, p.Addr())
	call := dubbokit.Call{Version: "1.0.0", Method: dubbokit.MethodAttachment, Arg: "env",
		Attachments: map[string]string{"env": "canary"}}
	if err := r.Send(7, call); err != nil {
		t.Fatal(err)
	}
	resp, err := r.Read(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ID != 7 || resp.Status != dubbokit.StatusOK || resp.Value != "v1: canary" || resp.Err != "" {
		t.Errorf("response = %+v, want id 7, OK, %q", resp, "v1: canary")
	}

	call.Version = "9.9.9"
	if err := r.Send(8, call); err != nil {
		t.Fatal(err)
	}
	resp, err = r.Read(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ID != 8 || !strings.Contains(resp.Err, "service not found") {
		t.Errorf("response = %+v, want id 8 and service not found", resp)
	}

	if err := r.Heartbeat(9); err != nil {
		t.Fatal(err)
	}
	resp, err = r.Read(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ID != 9 || !resp.Heartbeat {
		t.Errorf("response = %+v, want heartbeat 9", resp)
	}
}

// A real dubbo-go provider drops a connection that sends garbage.
func TestKitProviderClosesConnOnGarbage(t *testing.T) {
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "v1"})
	r := dubbokit.DialRaw(t, p.Addr())
	if err := r.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitClosed(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestKitDialFailsFastWithoutServer(t *testing.T) {
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "gone"})
	p.Kill() // its port is now closed
	start := time.Now()
	if _, err := dubbokit.Dial(p.Addr(), dubbokit.ConsumerConfig{}); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("dial to a closed port took %v", took)
	}
}
