package proxy_test

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

func TestIdleTimeoutClosesIdleConnectionsOnly(t *testing.T) {
	slow, err := toy.Serve("127.0.0.1:0", func(r *toy.Request) *toy.Response {
		time.Sleep(400 * time.Millisecond) // a slow server, longer than the idle timeout
		return &toy.Response{Body: r.Body}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	p := start(t, []obj{listener("in", "r", obj{"idle_timeout": "0.15s"})},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "slow"}))},
		[]obj{cluster("slow", "", slow.Addr())})
	c := dial(t, p.Addr(t, "in"))
	if r := call(t, c, nil); r.Err() != nil {
		t.Fatalf("a call slower than the idle timeout: %v", r.Err())
	}
	idle, err := net.Dial("tcp", p.Addr(t, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	began := time.Now()
	if _, err := idle.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("an idle connection was not closed: %v", err)
	}
	if took := time.Since(began); took < 100*time.Millisecond || took > 3*time.Second {
		t.Fatalf("the idle connection closed after %v, want about 0.15s", took)
	}
}

func TestMaxRequestsAnswersOverloaded(t *testing.T) {
	release := make(chan struct{})
	var arrived atomic.Int64
	held, err := toy.Serve("127.0.0.1:0", func(r *toy.Request) *toy.Response {
		arrived.Add(1)
		<-release
		return &toy.Response{Body: r.Body}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	cl := cluster("held", "", held.Addr())
	cl["circuit_breakers"] = obj{"thresholds": []obj{{"max_requests": 2, "max_connections": 1}}}
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "held"}))}, []obj{cl})
	c := dial(t, p.Addr(t, "in"))
	results := make(chan *toy.Response, 2)
	for i := 0; i < 2; i++ {
		go func() {
			r, err := c.Call(nil, nil)
			if err != nil {
				t.Error(err)
			}
			results <- r
		}()
	}
	testutil.Eventually(t, 5*time.Second, "two calls held upstream", func() bool { return arrived.Load() == 2 })
	if r := call(t, c, nil); statusOf(r) != "overloaded" {
		t.Fatalf("a third call past max_requests 2: %s, want overloaded", statusOf(r))
	}
	close(release)
	for i := 0; i < 2; i++ {
		if r := <-results; r == nil || r.Err() != nil {
			t.Fatalf("a held call: %+v", r)
		}
	}
	if r := call(t, c, nil); r.Err() != nil {
		t.Fatalf("a call after the held ones finished: %v", r.Err())
	}
}

func TestRetryOnResetAndFaultAbort(t *testing.T) {
	var resets atomic.Int64
	flaky, err := toy.Serve("127.0.0.1:0", func(r *toy.Request) *toy.Response { return &toy.Response{Body: []byte("ok")} })
	if err != nil {
		t.Fatal(err)
	}
	defer flaky.Close()
	// A relay that resets the first connection after the request arrives.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			if resets.Add(1) == 1 {
				_, _ = in.Read(make([]byte, 64))
				in.(*net.TCPConn).SetLinger(0)
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", flaky.Addr())
			if err != nil {
				in.Close()
				continue
			}
			go relay(in, out)
			go relay(out, in)
		}
	}()
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r",
			route("abort", match("method", "abort"), obj{"cluster": "c", "fault": obj{"abort": obj{"status": "unavailable", "percentage": 100}}}),
			route("all", nil, obj{"cluster": "c", "retry_policy": obj{"num_retries": 2, "retry_on": []string{"reset"}}}),
		)},
		[]obj{cluster("c", "", ln.Addr().String())})
	c := dial(t, p.Addr(t, "in"))
	if r := call(t, c, nil); r.Err() != nil || string(r.Body) != "ok" {
		t.Fatalf("a call whose first try was reset: %v %q", r.Err(), r.Body)
	}
	if resets.Load() < 2 {
		t.Fatal("the reset was not retried on a new connection")
	}
	if r := call(t, c, map[string]string{"method": "abort"}); statusOf(r) != "no_upstream" {
		t.Fatalf("an injected abort: %s", statusOf(r))
	}
}

func relay(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
}

// An endpoint that keeps answering with errors is ejected when the cluster's
// outlier detection counts error answers (Istio's consecutive5xxErrors).
func TestOutlierDetectionEjectsAnErroringEndpoint(t *testing.T) {
	good, _ := named(t, "good")
	bad, err := toy.Serve("127.0.0.1:0", func(*toy.Request) *toy.Response {
		return &toy.Response{Status: 1, Body: []byte("broken")}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	cl := cluster("c", "ROUND_ROBIN", good.Addr(), bad.Addr())
	cl["outlier_detection"] = obj{"consecutive_5xx": 2, "base_ejection_time": "30s"}
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "c"}))}, []obj{cl})
	c := dial(t, p.Addr(t, "in"))
	errorsSeen := 0
	for i := 0; i < 4; i++ { // round robin: two answers from each
		if call(t, c, nil).Err() != nil {
			errorsSeen++
		}
	}
	if errorsSeen != 2 {
		t.Fatalf("%d error answers before the ejection, want 2", errorsSeen)
	}
	for i := 0; i < 20; i++ {
		if got := answeredBy(t, c, nil); got != "good" {
			t.Fatalf("call %d after the ejection went to %q", i, got)
		}
	}
}
