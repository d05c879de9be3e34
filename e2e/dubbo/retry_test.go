package dubbo

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// A route's retry_policy through real dubbo-go calls: each retry_on
// condition, on a cluster of one good provider and one bad endpoint, has
// every call succeed on the provider; without the condition, some fail.
// The bad endpoints are testutil's BadPeers, plain sockets that misbehave
// as a provider can.

// retryRoute sends every call to cluster "c" with a retry policy.
func retryRoute(numRetries int, perTry time.Duration, on ...string) obj {
	r := route("retried", nil, "c", routeTimeout)
	policy := obj{"num_retries": numRetries, "retry_on": on}
	if perTry > 0 {
		policy["per_try_timeout"] = fmt.Sprintf("%gs", perTry.Seconds())
	}
	r["route"].(obj)["retry_policy"] = policy
	return r
}

// callsOutcome makes n sayHello calls one after another and returns how
// many failed and the first failure.
func callsOutcome(t *testing.T, addr string, n int, want string) (int, error) {
	t.Helper()
	c := dubbokit.NewConsumer(t, addr, consumerConfig())
	return testutil.Outcome(n, func(i int) error {
		got, err := c.SayHello(context.Background(), fmt.Sprint(i))
		if err == nil && got != fmt.Sprintf("%s: hello %d", want, i) {
			err = fmt.Errorf("answer %q", got)
		}
		return err
	})
}

func TestRetryOnThroughDubboGo(t *testing.T) {
	a := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	testutil.RetryOn(t, routeTimeout, func(t *testing.T, bad *testutil.BadPeer, on string, perTry time.Duration) (int, error) {
		_, addr := startProxyWithFilter(t, nil, []obj{retryRoute(1, perTry, on)}, cluster(t, "c", bad.Addr, a.Addr()))
		return callsOutcome(t, addr, testutil.RetryCalls, "a")
	})
}

// A connect failure is retried up to num_retries times on other
// endpoints: two providers that are down and one that is up answer every
// call.
func TestRetryConnectFailureThroughDubboGo(t *testing.T) {
	a := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	down1, down2 := testutil.DownPeer(t), testutil.DownPeer(t)
	for _, tc := range []struct {
		retries  int
		mayFail  bool
		scenario string
	}{
		{2, false, "two retries reach the provider past two down endpoints"},
		{0, true, "one free retry is not enough past two down endpoints"},
	} {
		_, addr := startProxyWithFilter(t, nil, []obj{retryRoute(tc.retries, 0, "connect-failure")},
			withOutlier(cluster(t, "c", down1.Addr, down2.Addr, a.Addr())))
		failed, err := callsOutcome(t, addr, 6, "a")
		if !tc.mayFail && failed > 0 {
			t.Errorf("%s: %d of 6 calls failed: %v", tc.scenario, failed, err)
		}
		if tc.mayFail && failed == 0 {
			t.Errorf("%s: no call failed", tc.scenario)
		}
	}
}

// withOutlier keeps failing endpoints in the cluster's rotation, so each
// call meets them (an ejected endpoint would hide the retries).
func withOutlier(c obj) obj {
	c["outlier_detection"] = obj{"consecutive_local_origin_failure": 1000, "consecutive_gateway_failure": 1000, "consecutive_5xx": 1000, "max_ejection_percent": 0}
	return c
}

// The retry budget refuses retries when many requests fail at once:
// calls held by the provider keep requests in flight, a resetting endpoint
// fails the rest together, and a budget of 0% with one retry at a time
// lets one of them retry; without the budget, every one retries and
// succeeds.
func TestRetryBudgetThroughDubboGo(t *testing.T) {
	for _, budget := range []bool{true, false} {
		t.Run(fmt.Sprintf("budget=%v", budget), func(t *testing.T) {
			a := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
			bad := testutil.ResettingPeer(t, 300*time.Millisecond)
			c := withOutlier(cluster(t, "c", bad.Addr, a.Addr()))
			th := obj{"max_retries": 100}
			if budget {
				th["retry_budget"] = obj{"budget_percent": obj{"value": 0}, "min_retry_concurrency": 1}
			}
			c["circuit_breakers"] = obj{"thresholds": []obj{th}}
			px, addr := startProxyWithFilter(t, nil, []obj{retryRoute(1, 0, "reset")}, c)
			consumer := dubbokit.NewConsumer(t, addr, consumerConfig())
			const n = 20
			errs := make(chan error, n)
			var answered atomic.Int64
			for i := range n {
				go func() {
					_, err := consumer.Call(context.Background(), dubbokit.MethodHold, fmt.Sprint(i))
					errs <- err
					answered.Add(1)
				}()
			}
			// Half the calls hold at the provider, the other half reset
			// together and ask to retry there: each is then held (its
			// first try, or a retry the budget let through) or answered
			// (a retry refused).
			testutil.MustPoll(t, time.Minute, "every call held at the provider or answered", func() (bool, error) {
				held, done, reads := a.Holding(), answered.Load(), bad.Reads.Load()
				return reads > 0 && held+done == n, fmt.Errorf("%d held, %d answered, the resetting endpoint read %d times", held, done, reads)
			})
			a.Release()
			failed := 0
			for range n {
				if err := <-errs; err != nil {
					failed++
					if !strings.Contains(err.Error(), "reset") {
						t.Errorf("a call failed with %v, want the upstream reset", err)
					}
				}
			}
			overflow := metric(t, px.AdminAddr, `rosetta_upstream_errors_total{cluster="c",kind="retry_overflow"}`)
			resets := metric(t, px.AdminAddr, `rosetta_upstream_errors_total{cluster="c",kind="reset"}`)
			t.Logf("%v calls reset, %d failed, %v retries refused", resets, failed, overflow)
			if resets < 2 {
				t.Fatalf("%v calls reset: the test needs at least 2 failing together", resets)
			}
			if budget && (failed != int(resets)-1 || overflow != resets-1) {
				t.Errorf("with a budget of one retry: %d of %v reset calls failed, %v retries refused; want all but one", failed, resets, overflow)
			}
			if !budget && (failed != 0 || overflow != 0) {
				t.Errorf("without a budget: %d calls failed, %v retries refused; want none", failed, overflow)
			}
		})
	}
}

// metric reads one series of the proxy's /metrics, such as
// `name{a="x",b="y"}` (labels in Prometheus's order); 0 when absent.
func metric(t *testing.T, admin, series string) float64 {
	t.Helper()
	name, labels, _ := strings.Cut(strings.TrimSuffix(series, "}"), "{")
	return testutil.Scrape(t, "http://"+admin+"/metrics", name, labels)
}

// blackholeEndpoint is a listening socket whose accept queue is full:
// connections to it are neither made nor refused until the dial gives up.
func blackholeEndpoint(t *testing.T) *testutil.BadPeer {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for i := 0; ; i++ { // fill the queue until a dial hangs
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
		if i == 16 {
			t.Fatal("the accept queue does not fill")
		}
	}
	return &testutil.BadPeer{Addr: addr}
}

// "unavailable": an endpoint whose connection cannot take one more request
// waiting for it to be made (max_pending_requests 1, and the connection
// hangs) refuses the request, which is retried on the provider at once;
// without the condition the call fails with the overload error.
func TestRetryUnavailableThroughDubboGo(t *testing.T) {
	a := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	for _, on := range []string{"unavailable", "reset"} {
		t.Run(on, func(t *testing.T) {
			c := cluster(t, "c", blackholeEndpoint(t).Addr, a.Addr())
			c["connect_timeout"] = "3s"
			c["circuit_breakers"] = obj{"thresholds": []obj{{"max_pending_requests": 1}}}
			px, addr := startProxyWithFilter(t, nil, []obj{retryRoute(1, 0, on)}, withOutlier(c))
			consumer := dubbokit.NewConsumer(t, addr, consumerConfig())
			// Round robin: calls 0 and 2 pick the hanging endpoint; call 0
			// waits for its connection, call 2 finds no room there.
			var failed []error
			start := time.Now()
			first := make(chan error, 1)
			go func() { _, err := consumer.SayHello(context.Background(), "0"); first <- err }()
			testutil.Eventually(t, 5*time.Second, "the first call waiting on the hanging endpoint", func() bool {
				return metric(t, px.AdminAddr, `rosetta_upstream_requests_active{cluster="c"}`) == 1
			})
			for i := 1; i <= 2; i++ {
				if _, err := consumer.SayHello(context.Background(), fmt.Sprint(i)); err != nil {
					failed = append(failed, err)
				}
			}
			quick := time.Since(start)
			t.Logf("retry_on %s: failed %v", on, failed)
			if err := <-first; err != nil {
				t.Errorf("the call that waited for the connection: %v (it is retried once the dial fails)", err)
			}
			switch {
			case on == "unavailable" && (len(failed) > 0 || quick > 2*time.Second):
				t.Errorf("retry_on unavailable: failed %v after %v; want both calls answered at once", failed, quick)
			case on != "unavailable" && (len(failed) != 1 || !strings.Contains(failed[0].Error(), "rosetta")):
				t.Errorf("retry_on %s: failed %v; want the overloaded call's error", on, failed)
			}
		})
	}
}
