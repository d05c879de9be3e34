package proxy_test

import (
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// A retry of a request routed before a config update that removed every
// endpoint of its cluster goes to the endpoints of the cluster of the same
// name in the config in force: not to a removed endpoint, and not to an
// error. Here the removed server crashes with the request in flight, and
// the route retries on reset.
func TestRetryAfterEndpointsRemovedGoesToTheNewOnes(t *testing.T) {
	arrived := make(chan struct{}, 1)
	a, err := toy.Serve("127.0.0.1:0", func(*toy.Request) *toy.Response {
		arrived <- struct{}{}
		return nil // never answers: the crash below ends the request
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	b, _ := named(t, "b")
	lst := []obj{listener("in", "r", nil)}
	routes := []obj{routeConfig("r", route("all", nil, obj{"cluster": "c",
		"retry_policy": obj{"num_retries": 1, "retry_on": []string{"reset"}}}))}
	p := start(t, lst, routes, []obj{cluster("c", "", a.Addr())})
	c := dial(t, p.Addr(t, "in"))
	type answer struct {
		server string
		err    error
	}
	got := make(chan answer, 1)
	go func() {
		r, err := c.Call(nil, []byte("x"))
		if err == nil {
			err = r.Err()
		}
		if err != nil {
			got <- answer{err: err}
			return
		}
		got <- answer{server: r.Headers["server"]}
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach a")
	}
	boot, err := config.Parse([]byte(configJSON(t, lst, routes, []obj{cluster("c", "", b.Addr())})))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(boot.Resources); err != nil {
		t.Fatal(err)
	}
	a.Close()
	select {
	case r := <-got:
		if r.err != nil || r.server != "b" {
			t.Fatalf("the retried request: answered by %q, %v; want b", r.server, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the retried request was not answered")
	}
}
