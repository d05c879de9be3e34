package trpc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"trpc.group/trpc-go/trpc-go/errs"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
	rtrpc "github.com/rosetta-mesh/rosetta/protocols/trpc"
)

// Retries and rate limits through real trpc-go calls, as e2e/dubbo proves
// them through dubbo-go: a route's retry_policy (per-try timeout, retry_on
// timeout and reset) on a cluster of one trpc-go server and one of
// testutil's bad peers, a route configuration's local_rate_limit, and a
// global_rate_limit against Envoy's rate limit service.

// policyProxy runs a proxy whose one tRPC listener serves the route
// configuration rc, and returns it with the listener's address.
func policyProxy(t *testing.T, rc obj, clusters ...obj) (*proxytest.Proxy, string) {
	t.Helper()
	px := proxytest.Start(t, testutil.ListenerConfig(t, "trpc", rtrpc.Name, rc, clusters...))
	return px, px.Addr(t, "trpc")
}

// clusterOf is a round-robin cluster of addrs.
func clusterOf(name string, addrs ...string) obj {
	var eps []obj
	for _, a := range addrs {
		eps = append(eps, endpoint(a))
	}
	return obj{"name": name, "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN",
		"load_assignment": obj{"cluster_name": name, "endpoints": []obj{{"lb_endpoints": eps}}},
		// Failing endpoints stay in rotation, so each call meets them (an
		// ejected one would hide the retries).
		"outlier_detection": obj{"consecutive_local_origin_failure": 1000, "consecutive_gateway_failure": 1000,
			"consecutive_5xx": 1000, "max_ejection_percent": 0}}
}

// routes is a route configuration of routes.
func routes(rs ...obj) obj { return obj{"name": "policy", "routes": rs} }

// routeTimeout is every policy route's timeout.
const routeTimeout = 5 * time.Second

// toCluster sends every call to cluster c, with extra route fields.
func toCluster(name, c string, extra obj) obj {
	action := obj{"cluster": c, "timeout": fmt.Sprintf("%gs", routeTimeout.Seconds())}
	for k, v := range extra {
		action[k] = v
	}
	return obj{"name": name, "route": action}
}

// helloOutcome makes n SayHello calls one after another and returns how
// many failed and the first failure.
func helloOutcome(addr string, n int, want string) (int, error) {
	return testutil.Outcome(n, func(i int) error {
		got, err := callHello(context.Background(), sayHello, fmt.Sprint(i), clientOpts(addr)...)
		if err == nil && got != fmt.Sprintf("%s: hello %d", want, i) {
			err = fmt.Errorf("answer %q", got)
		}
		return err
	})
}

func TestRetryOnThroughTrpcGo(t *testing.T) {
	a := startServer(t, "a")
	testutil.RetryOn(t, routeTimeout, func(t *testing.T, bad *testutil.BadPeer, on string, perTry time.Duration) (int, error) {
		policy := obj{"num_retries": 1, "retry_on": []string{on}}
		if perTry > 0 {
			policy["per_try_timeout"] = fmt.Sprintf("%gs", perTry.Seconds())
		}
		_, addr := policyProxy(t, routes(toCluster("retried", "c", obj{"retry_policy": policy})), clusterOf("c", bad.Addr, a))
		return helloOutcome(addr, testutil.RetryCalls, "a")
	})
}

// throttled reports whether err is the proxy's over-limit answer as
// trpc-go surfaces it: the server's throttled code.
func throttled(err error) bool {
	return err != nil && errs.Code(err) == errs.RetServerThrottled
}

// TestLocalRateLimitThroughTrpcGo: a route configuration's
// local_rate_limit, its default bucket (2 tokens, no refill during the
// test) shared by the routes and a condition (func FailHello) with a
// bucket of its own (1 token).
func TestLocalRateLimitThroughTrpcGo(t *testing.T) {
	a := startServer(t, "a")
	hour := "3600s"
	rc := routes(toCluster("all", "a", nil))
	rc["local_rate_limit"] = obj{
		"token_bucket": obj{"max_tokens": 2, "tokens_per_fill": 2, "fill_interval": hour},
		"conditions": []obj{{
			"match":        obj{"attributes": []obj{{"name": "func", "exact": failHello}}},
			"token_bucket": obj{"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": hour},
		}},
	}
	_, addr := policyProxy(t, rc, clusterFor("a", a))
	hello := func() error {
		_, err := callHello(context.Background(), sayHello, "x", clientOpts(addr)...)
		return err
	}
	// FailHello's answer is the server's own error (code 1001) when let through.
	fail := func() error {
		_, err := callHello(context.Background(), failHello, "x", clientOpts(addr)...)
		return err
	}
	for _, s := range []struct {
		what    string
		call    func() error
		limited bool
	}{
		{"SayHello 1", hello, false},
		{"SayHello 2", hello, false},
		{"SayHello 3, the shared bucket empty", hello, true},
		{"FailHello 1, its own bucket", fail, false},
		{"FailHello 2, its bucket empty", fail, true},
	} {
		err := s.call()
		if s.limited != throttled(err) {
			t.Errorf("%s: error %v; throttled: want %t", s.what, err, s.limited)
		}
		if !s.limited && err != nil && errs.Code(err) != 1001 {
			t.Errorf("%s: %v", s.what, err)
		}
	}
}

// TestGlobalRateLimitThroughTrpcGo: a route's global_rate_limit asks Envoy's
// rate limit service about each call's func; a rule of 3 calls a day for
// any func admits the first 3 of 6 and refuses the rest with trpc-go's
// throttled error, as the service counts them. (The rule names no func:
// the service's metrics cannot carry a value with dots and slashes.)
func TestGlobalRateLimitThroughTrpcGo(t *testing.T) {
	rls := testutil.StartRateLimitService(t, `
domain: rosetta
descriptors:
- key: func
  rate_limit: {unit: day, requests_per_unit: 3}
`)
	a := startServer(t, "a")
	route := toCluster("limited", "a", obj{"global_rate_limit": obj{
		"domain":      "rosetta",
		"descriptors": []obj{{"key": "func", "attribute": "func"}},
		"cluster":     "rls",
		"timeout":     "5s",
	}})
	px, addr := policyProxy(t, routes(route), clusterFor("a", a), clusterFor("rls", rls.GRPC))
	admitted, denied := 0, 0
	for i := range 6 {
		got, err := callHello(context.Background(), sayHello, fmt.Sprint(i), clientOpts(addr)...)
		switch {
		case err == nil && got == fmt.Sprintf("a: hello %d", i):
			admitted++
		case throttled(err):
			denied++
		default:
			t.Fatalf("call %d: %q, %v; want the answer or the throttled error", i, got, err)
		}
	}
	if admitted != 3 || denied != 3 {
		t.Errorf("admitted %d, denied %d; want 3 and 3", admitted, denied)
	}
	key := `key1="func"`
	testutil.MustPoll(t, 10*time.Second, "the service's counters to reach the calls made", func() (bool, error) {
		in := rls.Counter(t, "ratelimit_service_rate_limit_within_limit", key)
		over := rls.Counter(t, "ratelimit_service_rate_limit_over_limit", key)
		return in == float64(admitted) && over == float64(denied), fmt.Errorf("within_limit %v, over_limit %v", in, over)
	})
	if got := testutil.Scrape(t, "http://"+px.AdminAddr+"/metrics", "rosetta_global_rate_limit_decisions_total", `outcome="over_limit"`); got != float64(denied) {
		t.Errorf("the proxy counted %v over-limit decisions, the client saw %d", got, denied)
	}
}
