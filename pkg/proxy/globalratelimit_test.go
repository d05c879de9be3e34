package proxy_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
)

// fakeRLS is an in-memory rate limit service: it answers OVER_LIMIT for
// user "over", holds user "slow" until release closes, and OK otherwise.
type fakeRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
	release chan struct{}
	calls   atomic.Int64
	last    atomic.Pointer[rlsv3.RateLimitRequest]
}

func (f *fakeRLS) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	f.calls.Add(1)
	f.last.Store(req)
	code := rlsv3.RateLimitResponse_OK
	switch req.GetDescriptors()[0].GetEntries()[0].GetValue() {
	case "over":
		code = rlsv3.RateLimitResponse_OVER_LIMIT
	case "slow":
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &rlsv3.RateLimitResponse{OverallCode: code}, nil
}

func startFakeRLS(t *testing.T) (*fakeRLS, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRLS{release: make(chan struct{})}
	s := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(s, f)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return f, ln.Addr().String()
}

// TestGlobalRateLimitDoesNotHoldTheConnection: while the rate limit
// service thinks about one request, later requests on the same downstream
// connection are served (the reader does not wait for the service); its
// answer then decides, a late answer counts as a failure, and a request
// without the descriptor's attribute is not sent to the service.
func TestGlobalRateLimitDoesNotHoldTheConnection(t *testing.T) {
	rls, rlsAddr := startFakeRLS(t)
	up, _ := named(t, "up")
	limit := func(timeout string, deny bool) obj {
		return obj{"cluster": "up", "global_rate_limit": obj{
			"domain": "d", "cluster": "rls", "timeout": timeout, "deny_on_fail": deny,
			"descriptors": []obj{{"key": "user", "attribute": "user"}},
		}}
	}
	px := start(t, []obj{listener("l", "r", nil)}, []obj{routeConfig("r",
		route("strict", match("route", "strict"), limit("0.2s", true)),
		route("lenient", match("route", "lenient"), limit("0.2s", false)),
		route("patient", nil, limit("10s", false)),
	)}, []obj{cluster("up", "", up.Addr()), cluster("rls", "", rlsAddr)})
	c := dial(t, px.Addr(t, "l"))

	slow := make(chan string, 1)
	go func() {
		r, err := c.Call(map[string]string{"user": "slow"}, []byte("x"))
		if err != nil {
			slow <- err.Error()
			return
		}
		slow <- statusOf(r)
	}()
	// Wait until the service holds the slow request, then make calls on
	// the same connection.
	for deadline := time.Now().Add(5 * time.Second); rls.calls.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow request never reached the rate limit service")
		}
	}
	if got := statusOf(call(t, c, map[string]string{"user": "ann"})); got != "ok" {
		t.Errorf("a request the service admits: %s", got)
	}
	if got := statusOf(call(t, c, map[string]string{"user": "over"})); got != "rate_limited" {
		t.Errorf("a request the service refuses: %s, want rate_limited", got)
	}
	if d := rls.last.Load(); d.GetDomain() != "d" || d.GetDescriptors()[0].GetEntries()[0].GetKey() != "user" {
		t.Errorf("the service was asked %v", d)
	}
	n := rls.calls.Load()
	if got := statusOf(call(t, c, map[string]string{"other": "x"})); got != "ok" || rls.calls.Load() != n {
		t.Errorf("a request without the attribute: %s, %d calls to the service; want ok and none", got, rls.calls.Load()-n)
	}
	// Late answers: deny_on_fail decides.
	if got := statusOf(call(t, c, map[string]string{"route": "strict", "user": "slow"})); got != "rate_limited" {
		t.Errorf("a late answer with deny_on_fail: %s, want rate_limited", got)
	}
	if got := statusOf(call(t, c, map[string]string{"route": "lenient", "user": "slow"})); got != "ok" {
		t.Errorf("a late answer without deny_on_fail: %s, want ok", got)
	}
	select {
	case got := <-slow:
		t.Fatalf("the slow request was answered (%s) before the service answered", got)
	default:
	}
	close(rls.release)
	if got := <-slow; got != "ok" {
		t.Errorf("the slow request, once the service admits it: %s", got)
	}
	m := px.Get(t, "/metrics")
	for _, want := range []string{
		`rosetta_global_rate_limit_decisions_total{listener="l",outcome="over_limit",route="patient"} 1`,
		`rosetta_global_rate_limit_decisions_total{listener="l",outcome="failed_denied",route="strict"} 1`,
		`rosetta_global_rate_limit_decisions_total{listener="l",outcome="failed_allowed",route="lenient"} 1`,
		`rosetta_global_rate_limit_decisions_total{listener="l",outcome="ok",route="patient"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "global_rate_limit"))
		}
	}
}
