package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

func TestRoutesByAttributeFirstMatchWins(t *testing.T) {
	a, _ := named(t, "a")
	b, _ := named(t, "b")
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r",
			route("ping", match("method", "ping"), obj{"cluster": "a"}),
			route("canary", obj{"attributes": []obj{{"name": "env", "prefix": "can"}, {"name": "method", "regex": "get.*"}}}, obj{"cluster": "a"}),
			route("rest", obj{"attributes": []obj{{"name": "method", "present": true}}}, obj{"cluster": "b"}),
		)},
		[]obj{cluster("a", "", a.Addr()), cluster("b", "", b.Addr())})
	c := dial(t, p.Addr(t, "in"))
	cases := []struct {
		headers map[string]string
		want    string
	}{
		{map[string]string{"method": "ping"}, "a"},
		{map[string]string{"method": "getUser", "env": "canary"}, "a"},
		{map[string]string{"method": "getUser", "env": "prod"}, "b"},
		{map[string]string{"method": "setUser", "env": "canary"}, "b"},
	}
	for _, tc := range cases {
		if got := answeredBy(t, c, tc.headers); got != tc.want {
			t.Errorf("%v went to %s, want %s", tc.headers, got, tc.want)
		}
	}
	r := call(t, c, map[string]string{"other": "x"})
	if statusOf(r) != "no_route" || !strings.Contains(string(r.Body), "no route") {
		t.Fatalf("a request no route matches got status %s %q, want the no_route local reply", statusOf(r), r.Body)
	}
}

func TestWeightedSplit(t *testing.T) {
	a, ha := named(t, "a")
	b, hb := named(t, "b")
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r", route("split", nil, obj{"weighted_clusters": obj{"clusters": []obj{{"name": "a", "weight": 20}, {"name": "b", "weight": 80}}}}))},
		[]obj{cluster("a", "", a.Addr()), cluster("b", "", b.Addr())})
	c := dial(t, p.Addr(t, "in"))
	const n = 2000
	for i := 0; i < n; i++ {
		answeredBy(t, c, nil)
	}
	share := float64(ha.Load()) / n
	if share < 0.16 || share > 0.24 || ha.Load()+hb.Load() != n {
		t.Fatalf("a got %d and b %d of %d calls; want about 20%%/80%%", ha.Load(), hb.Load(), n)
	}
}

func TestRequestTimeoutRepliesAndConnectionSurvives(t *testing.T) {
	slow, err := toy.Serve("127.0.0.1:0", func(r *toy.Request) *toy.Response {
		if r.Headers["method"] == "hang" {
			return nil // never answers
		}
		return &toy.Response{Body: r.Body}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "slow", "timeout": "0.2s"}))},
		[]obj{cluster("slow", "", slow.Addr())})
	c := dial(t, p.Addr(t, "in"))
	began := time.Now()
	r := call(t, c, map[string]string{"method": "hang"})
	if took := time.Since(began); statusOf(r) != "timeout" || took < 200*time.Millisecond || took > 2*time.Second {
		t.Fatalf("a call the server never answers: status %s after %v; want timeout after 0.2s", statusOf(r), took)
	}
	if r := call(t, c, map[string]string{"method": "ok"}); r.Err() != nil {
		t.Fatalf("the next call on the same connection: %v", r.Err())
	}
}

// Many clients share few upstream connections: the proxy rewrites request ids,
// and every answer must still reach the caller that asked.
func TestMultiplexesManyClientsOverFewConnections(t *testing.T) {
	var conns atomic.Int64
	srv, err := toy.Serve("127.0.0.1:0", func(r *toy.Request) *toy.Response {
		return &toy.Response{Body: r.Body}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	counting := countingForwarder(t, srv.Addr(), &conns)
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "echo"}))},
		[]obj{cluster("echo", "", counting)})
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for cl := 0; cl < 8; cl++ {
		c := dial(t, p.Addr(t, "in"))
		for g := 0; g < 25; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					body := []byte(fmt.Sprintf("client %d goroutine %d call %d", cl, g, i))
					r, err := c.Call(nil, body)
					if err == nil && !bytes.Equal(r.Body, body) {
						err = fmt.Errorf("sent %q, got back %q", body, r.Body)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := conns.Load(); n < 1 || n > 4 {
		t.Fatalf("8 clients with 200 concurrent callers used %d upstream connections; want a few", n)
	}
}

// countingForwarder is a TCP relay in front of addr that counts connections.
func countingForwarder(t *testing.T, addr string, n *atomic.Int64) string {
	return testutil.Accept(t, func(in net.Conn) {
		n.Add(1)
		out, err := net.Dial("tcp", addr)
		if err != nil {
			in.Close()
			return
		}
		go func() { _, _ = io.Copy(out, in); out.Close() }()
		_, _ = io.Copy(in, out)
		in.Close()
	})
}

func TestKilledServerFailsOnlyItsCallsThenTrafficMovesOn(t *testing.T) {
	good, goodHits := named(t, "good")
	release := make(chan struct{})
	var arrived atomic.Int64
	doomed, err := toy.Serve("127.0.0.1:0", func(r *toy.Request) *toy.Response {
		arrived.Add(1)
		<-release
		return &toy.Response{Headers: map[string]string{"server": "doomed"}}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer close(release)
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "both"}))},
		[]obj{cluster("both", "ROUND_ROBIN", good.Addr(), doomed.Addr())})
	c := dial(t, p.Addr(t, "in"))
	// Two calls in flight: round robin puts one on each server.
	results := make(chan *toy.Response, 2)
	for i := 0; i < 2; i++ {
		go func() {
			r, err := c.Call(nil, nil)
			if err != nil {
				t.Error(err)
				r = &toy.Response{Status: 255}
			}
			results <- r
		}()
	}
	first := <-results // the good server's answer
	if first.Err() != nil || first.Headers["server"] != "good" {
		t.Fatalf("the call on the healthy server: %v %v", first.Err(), first.Headers)
	}
	testutil.Eventually(t, 5*time.Second, "the second call to reach the doomed server", func() bool { return arrived.Load() == 1 })
	doomed.Close()
	second := <-results
	if statusOf(second) != "upstream_reset" {
		t.Fatalf("the call in flight on the killed server: status %s, want upstream_reset", statusOf(second))
	}
	before := goodHits.Load()
	for i := 0; i < 50; i++ {
		if got := answeredBy(t, c, nil); got != "good" {
			t.Fatalf("call %d after the kill went to %s", i, got)
		}
	}
	if goodHits.Load()-before != 50 {
		t.Fatalf("the healthy server saw %d of 50 calls", goodHits.Load()-before)
	}
}

func TestConnectFailureIsRetriedOnAnotherEndpoint(t *testing.T) {
	good, _ := named(t, "good")
	dead := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)) // nothing listens there
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "c"}))},
		[]obj{cluster("c", "ROUND_ROBIN", dead, good.Addr())})
	c := dial(t, p.Addr(t, "in"))
	for i := 0; i < 20; i++ {
		if got := answeredBy(t, c, nil); got != "good" {
			t.Fatalf("call %d: %s", i, got)
		}
	}
}

func TestMalformedFrameClosesOnlyThatConnection(t *testing.T) {
	a, _ := named(t, "a")
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "a"}))},
		[]obj{cluster("a", "", a.Addr())})
	addr := p.Addr(t, "in")
	good := dial(t, addr)
	stop := make(chan struct{})
	failures := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				close(failures)
				return
			default:
			}
			if r, err := good.Call(nil, []byte("hi")); err != nil || r.Err() != nil {
				failures <- fmt.Errorf("a good call failed: %v %v", err, r)
				return
			}
		}
	}()
	for _, bad := range [][]byte{
		{0xff, 0xff, 0xff, 0xff, 1},  // a length past the limit
		{0, 0, 0, 20, 9, 1, 2, 3, 4}, // an unknown kind
	} {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Write(append(bad, make([]byte, 32)...)); err != nil {
			t.Fatal(err)
		}
		_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := raw.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("after a malformed frame the connection stayed open (read %d, %v)", n, err)
		}
		raw.Close()
	}
	close(stop)
	if err := <-failures; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Get(t, "/metrics"), `rosetta_downstream_protocol_errors_total{listener="in"} 2`) {
		t.Fatal("the protocol errors were not counted")
	}
}

// A frame whose head is sound but whose body is not gets the protocol's
// bad-request answer, then the connection closes.
func TestBadBodyGetsAnErrorReplyThenClose(t *testing.T) {
	a, _ := named(t, "a")
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "a"}))},
		[]obj{cluster("a", "", a.Addr())})
	raw, err := net.Dial("tcp", p.Addr(t, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// kind 1 (request), id 42, status 0, 3 headers promised, none present.
	bad := []byte{0, 0, 0, 11, 1, 0, 0, 0, 0, 0, 0, 0, 42, 0, 3}
	if _, err := raw.Write(bad); err != nil {
		t.Fatal(err)
	}
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(raw)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	m, err := toy.Codec{}.Decode(got)
	if err != nil || m.ID != 42 || statusOf(&toy.Response{Status: m.Raw[13]}) != "bad_request" {
		t.Fatalf("answer %x: %v; want a bad_request reply to id 42, then close", got, err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestConfigUpdateKeepsOpenConnectionsAndRejectsBadConfig(t *testing.T) {
	a, _ := named(t, "a")
	b, _ := named(t, "b")
	clusters := []obj{cluster("a", "", a.Addr()), cluster("b", "", b.Addr())}
	lst := []obj{listener("in", "r", nil)}
	p := start(t, lst, []obj{routeConfig("r", route("all", nil, obj{"cluster": "a"}))}, clusters)
	c := dial(t, p.Addr(t, "in"))
	if got := answeredBy(t, c, nil); got != "a" {
		t.Fatalf("before the update: %s", got)
	}
	apply := func(routes ...obj) error {
		boot, err := config.Parse([]byte(configJSON(t, lst, []obj{routeConfig("r", routes...)}, clusters)))
		if err != nil {
			t.Fatal(err)
		}
		return p.Apply(boot.Resources)
	}
	if err := apply(route("all", nil, obj{"cluster": "b"})); err != nil {
		t.Fatal(err)
	}
	if got := answeredBy(t, c, nil); got != "b" {
		t.Fatalf("the same connection after the update went to %s, want b", got)
	}
	err := apply(route("bad", obj{"attributes": []obj{{"name": "method", "regex": "(unclosed"}}}, obj{"cluster": "a"}))
	if err == nil || !strings.Contains(err.Error(), "routes[0] (bad): match.attributes[0]: regex") {
		t.Fatalf("a bad regex: %v; want an error naming the field", err)
	}
	if got := answeredBy(t, c, nil); got != "b" {
		t.Fatalf("after the rejected update: %s, want the last good config (b)", got)
	}
}

func TestConsistentHashKeepsAKeyOnOneEndpoint(t *testing.T) {
	var addrs []string
	for _, n := range []string{"s1", "s2", "s3"} {
		s, _ := named(t, n)
		addrs = append(addrs, s.Addr())
	}
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "ring", "hash_policy": []obj{{"attributes": []string{"user"}}}}))},
		[]obj{cluster("ring", "RING_HASH", addrs...)})
	c := dial(t, p.Addr(t, "in"))
	seen := map[string]bool{}
	for u := 0; u < 30; u++ {
		user := map[string]string{"user": fmt.Sprint("user-", u)}
		first := answeredBy(t, c, user)
		seen[first] = true
		for i := 0; i < 5; i++ {
			if got := answeredBy(t, c, user); got != first {
				t.Fatalf("user %d went to %s then %s", u, first, got)
			}
		}
	}
	if len(seen) < 2 {
		t.Fatalf("30 users all hashed to %v", seen)
	}
}

func TestGracefulShutdownFinishesCallsInFlight(t *testing.T) {
	// arrived is the server's own word that the call reached it.
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	slow, err := toy.Serve("127.0.0.1:0", func(r *toy.Request) *toy.Response {
		arrived <- struct{}{}
		<-release
		return &toy.Response{Body: []byte("done")}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "slow"}))},
		[]obj{cluster("slow", "", slow.Addr())})
	addr := p.Addr(t, "in")
	c := dial(t, addr)
	got := make(chan *toy.Response, 1)
	go func() {
		r, err := c.Call(nil, nil)
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the call never reached the server")
	}
	shutdownDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdownDone <- p.Shutdown(ctx)
	}()
	testutil.Eventually(t, 5*time.Second, "the listener to close", func() bool {
		nc, err := net.Dial("tcp", addr)
		if err == nil {
			nc.Close()
		}
		return err != nil
	})
	close(release)
	if r := <-got; r == nil || r.Err() != nil || string(r.Body) != "done" {
		t.Fatalf("the call in flight during shutdown: %+v", r)
	}
	if err := <-shutdownDone; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestAdminEndpoints(t *testing.T) {
	a, _ := named(t, "a")
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "a"}))},
		[]obj{cluster("a", "", a.Addr())})
	c := dial(t, p.Addr(t, "in"))
	answeredBy(t, c, nil)
	if got := p.Get(t, "/ready"); got != "ready\n" {
		t.Fatalf("/ready: %q", got)
	}
	m := p.Get(t, "/metrics")
	for _, want := range []string{
		`rosetta_requests_total{cluster="a",listener="in",route="all",status="ok"} 1`,
		`rosetta_request_duration_seconds_count{cluster="a",listener="in",route="all"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	dump := p.Get(t, "/config_dump")
	for _, want := range []string{`"name":"in"`, `"codec":"toy"`, `"name":"a"`} {
		if !strings.Contains(strings.ReplaceAll(dump, " ", ""), want) {
			t.Errorf("/config_dump lacks %s:\n%s", want, dump)
		}
	}
}

func TestOperationMetrics(t *testing.T) {
	a, _ := named(t, "a")
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r",
			route("ping", match("method", "ping"), obj{"cluster": "a"}),
			route("echo", match("method", "echo"), obj{"cluster": "a"}))},
		[]obj{cluster("a", "", a.Addr())})
	c := dial(t, p.Addr(t, "in"))
	// One connection alternating between series, which it remembers one
	// at a time.
	for _, method := range []string{"ping", "echo", "echo", "ping"} {
		answeredBy(t, c, map[string]string{"method": method})
	}
	call(t, c, map[string]string{"method": "nope"})
	m := p.Get(t, "/metrics")
	for _, want := range []string{
		`rosetta_operations_total{listener="in",operation="ping",status="ok"} 2`,
		`rosetta_operations_total{listener="in",operation="echo",status="ok"} 2`,
		`rosetta_operations_total{listener="in",operation="nope",status="no_route"} 1`,
		`rosetta_requests_total{cluster="a",listener="in",route="ping",status="ok"} 2`,
		`rosetta_requests_total{cluster="a",listener="in",route="echo",status="ok"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
