package dubbo

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

// These tests rate limit real dubbo-go calls through the proxy: a
// MetaRouter's globalRateLimit against Envoy's own rate limit service
// (github.com/envoyproxy/ratelimit, with redis-server as its store), and
// its service-wide localRateLimit.

// rateLimitRules is the service's config: 10 sayHello calls per second in
// domain "rosetta"; any other method 1000 per second.
const rateLimitRules = `
domain: rosetta
descriptors:
- key: method
  value: sayHello
  rate_limit: {unit: second, requests_per_unit: 10}
- key: method
  rate_limit: {unit: second, requests_per_unit: 1000}
`

// limitedProxy runs a proxy whose one listener serves the route
// configuration rc, and returns it with the listener's address.
func limitedProxy(t *testing.T, rc obj, clusters ...obj) (*proxytest.Proxy, string) {
	t.Helper()
	cfg := testutil.ListenerConfig(t, listenerName, "dubbo", rc, clusters...)
	var px *proxytest.Proxy
	addr := dubbokit.OnFreshPort(t, "proxy", func() (string, string) {
		px = proxytest.Start(t, cfg)
		a := px.Addr(t, listenerName)
		return a, a
	})
	return px, addr
}

// globalLimitRoute sends every call to cluster "a" after asking the rate
// limit service at cluster "rls" about its method.
func globalLimitRoute(denyOnFail bool, timeout string) obj {
	return obj{"name": "limited", "route": obj{
		"cluster": "a",
		"global_rate_limit": obj{
			"domain":       "rosetta",
			"descriptors":  []obj{{"key": "method", "attribute": "method"}},
			"cluster":      "rls",
			"timeout":      timeout,
			"deny_on_fail": denyOnFail,
		},
	}}
}

// rateLimited reports whether err is the proxy's over-limit answer as
// dubbo-go surfaces it: Dubbo status 100 (THREADPOOL_EXHAUSTED) with the
// proxy's reason.
func rateLimited(err error) bool {
	return err != nil && strings.Contains(err.Error(), "rate limit")
}

// TestGlobalRateLimitAdmitsTheServiceLimit: 5 s of dubbo-go calls, 100 a
// second, against a rule of 10 a second admit 50, as the rate limit
// service counts them; the others get the Dubbo over-limit error.
func TestGlobalRateLimitAdmitsTheServiceLimit(t *testing.T) {
	rls := testutil.StartRateLimitService(t, rateLimitRules)
	a := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	px, addr := limitedProxy(t, obj{"name": "limited", "routes": []obj{globalLimitRoute(false, "1s")}},
		cluster(t, "a", a.Addr()), cluster(t, "rls", rls.GRPC))
	c := dubbokit.NewConsumer(t, addr, consumerConfig())
	ctx := context.Background()
	if _, err := c.Echo(ctx, "warm"); err != nil { // the connections, and echo's own rule
		t.Fatal(err)
	}

	// The service counts in windows of a whole second of its clock (this
	// machine's): calls from just after a second starts until just before
	// the fifth one after it ends fill exactly five windows.
	start := time.Now().Truncate(time.Second).Add(time.Second + 20*time.Millisecond)
	end := start.Add(5*time.Second - 40*time.Millisecond)
	time.Sleep(time.Until(start))
	var mu sync.Mutex
	var admitted, denied int
	var example error
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond) // 50 a second per worker
			defer tick.Stop()
			for now := time.Now(); now.Before(end); now = <-tick.C {
				got, err := c.SayHello(ctx, "x")
				mu.Lock()
				switch {
				case err == nil && got == "a: hello x":
					admitted++
				case rateLimited(err):
					denied++
					example = err
				default:
					t.Errorf("worker %d: sayHello = %q, %v; want the answer or the over-limit error", w, got, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("admitted %d, denied %d in 5 s; dubbo-go sees: %v", admitted, denied, example)

	// A call in flight as a second ends may be counted in the next window
	// by the service, so a window can take one call more or less than
	// its calls' start times suggest: 50 +/- 2.
	if admitted < 48 || admitted > 52 {
		t.Errorf("admitted %d calls; want 50 (10 a second for 5 s)", admitted)
	}
	if denied < 100 {
		t.Errorf("denied %d calls of about 500; the rule was not applied", denied)
	}
	// The service's own accounting agrees with what the callers saw.
	within := `key1="method_sayHello"`
	testutil.MustPoll(t, 10*time.Second, "the service's counters to reach the calls made", func() (bool, error) {
		in := rls.Counter(t, "ratelimit_service_rate_limit_within_limit", within)
		over := rls.Counter(t, "ratelimit_service_rate_limit_over_limit", within)
		if in == float64(admitted) && over == float64(denied) {
			return true, nil
		}
		return false, fmt.Errorf("within_limit %s, over_limit %s", ftoa(in), ftoa(over))
	})
	// And so does the proxy's decisions metric.
	metrics := "http://" + px.AdminAddr + "/metrics"
	if got := testutil.Scrape(t, metrics, "rosetta_global_rate_limit_decisions_total", `outcome="over_limit"`); got != float64(denied) {
		t.Errorf("proxy counted %v over-limit decisions, callers saw %d", got, denied)
	}
	if got := testutil.Scrape(t, metrics, "rosetta_global_rate_limit_decisions_total", `outcome="ok"`); got != float64(admitted+1) {
		t.Errorf("proxy counted %v ok decisions, want %d (the calls admitted and the warm-up)", got, admitted+1)
	}
}

// TestGlobalRateLimitServiceDown: once the rate limit service is gone,
// deny_on_fail decides: true refuses calls with the over-limit error,
// false lets them through.
func TestGlobalRateLimitServiceDown(t *testing.T) {
	rls := testutil.StartRateLimitService(t, rateLimitRules)
	a := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	consumers := map[bool]*dubbokit.Consumer{}
	for _, deny := range []bool{true, false} {
		_, addr := limitedProxy(t, obj{"name": "limited", "routes": []obj{globalLimitRoute(deny, "0.2s")}},
			cluster(t, "a", a.Addr()), cluster(t, "rls", rls.GRPC))
		consumers[deny] = dubbokit.NewConsumer(t, addr, consumerConfig())
	}
	ctx := context.Background()
	for deny, c := range consumers {
		if got, err := c.Echo(ctx, "up"); err != nil || got != "a: up" {
			t.Fatalf("deny_on_fail %t, service up: echo = %q, %v", deny, got, err)
		}
	}
	rls.Proc.Kill()
	for range 3 {
		if _, err := consumers[true].Echo(ctx, "down"); !rateLimited(err) {
			t.Errorf("deny_on_fail true, service down: echo error %v, want the over-limit error", err)
		}
		if got, err := consumers[false].Echo(ctx, "down"); err != nil || got != "a: down" {
			t.Errorf("deny_on_fail false, service down: echo = %q, %v; want the answer", got, err)
		}
	}
}

// TestServiceLocalRateLimit: a MetaRouter's localRateLimit, in the route
// configuration: its default bucket (3 tokens, no refill during the test)
// is shared by the routes, and a condition (method echo) has a bucket of
// its own (2 tokens) that the default bucket's state does not touch.
func TestServiceLocalRateLimit(t *testing.T) {
	a := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	hour := "3600s"
	_, addr := limitedProxy(t, obj{
		"name": "limited",
		"local_rate_limit": obj{
			"token_bucket": obj{"max_tokens": 3, "tokens_per_fill": 3, "fill_interval": hour},
			"conditions": []obj{{
				"match":        obj{"attributes": []obj{{"name": "method", "exact": dubbokit.MethodEcho}}},
				"token_bucket": obj{"max_tokens": 2, "tokens_per_fill": 2, "fill_interval": hour},
			}},
		},
		"routes": []obj{
			route("hello", map[string]string{"method": dubbokit.MethodSayHello}, "a", routeTimeout),
			route("rest", nil, "a", routeTimeout),
		},
	}, cluster(t, "a", a.Addr()))
	c := dubbokit.NewConsumer(t, addr, consumerConfig())
	ctx := context.Background()
	attachment := func() error { _, err := c.Call(ctx, dubbokit.MethodAttachment, "k"); return err }
	hello := func() error { _, err := c.SayHello(ctx, "x"); return err }
	echo := func() error { _, err := c.Echo(ctx, "x"); return err }

	// Three tokens for two routes: sayHello (route hello) twice and
	// attachment (route rest) once take them all.
	steps := []struct {
		what    string
		call    func() error
		limited bool
	}{
		{"sayHello 1", hello, false},
		{"attachment 1", attachment, false},
		{"sayHello 2", hello, false},
		{"attachment 2, the shared bucket empty", attachment, true},
		{"sayHello 3, the shared bucket empty", hello, true},
		{"echo 1, its own bucket", echo, false},
		{"echo 2", echo, false},
		{"echo 3, its bucket empty", echo, true},
	}
	for _, s := range steps {
		err := s.call()
		if s.limited != rateLimited(err) {
			t.Errorf("%s: error %v; rate limited: want %t", s.what, err, s.limited)
		}
		if !s.limited && err != nil {
			t.Errorf("%s: %v", s.what, err)
		}
	}
	// On the wire, the refusal is a Dubbo response with status 100
	// (THREADPOOL_EXHAUSTED), what a provider sends when it is overloaded.
	r := dubbokit.DialRaw(t, addr)
	if err := r.Send(7, dubbokit.Call{Version: version, Method: dubbokit.MethodEcho, Arg: "x"}); err != nil {
		t.Fatal(err)
	}
	resp, err := r.Read(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ID != 7 || resp.Status != statusThreadpoolExhausted || !strings.Contains(resp.Err, "rate limited") {
		t.Errorf("raw over-limit response = %+v, want id 7, status %d, a rate-limited message", resp, statusThreadpoolExhausted)
	}
}

// statusThreadpoolExhausted is Dubbo's status 100, the codec's answer to a
// rate-limited call.
const statusThreadpoolExhausted = 100

// waitFor polls cond for up to 10 s; on failure it reports state.
func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
