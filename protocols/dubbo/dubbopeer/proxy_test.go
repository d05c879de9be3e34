package dubbopeer_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
	_ "github.com/rosetta-mesh/rosetta/protocols/dubbo" // registers the codec
	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
)

// proxyConfig has the shape of examples/dubbo/proxy.yaml on free ports:
// sayHello goes to cluster hello (with an attachment added), other calls to
// org.example.Greeter go to cluster other, anything else has no route.
const proxyConfig = `
listeners:
- name: dubbo
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
  filter_chains:
  - filters:
    - name: rosetta.metaprotocol
      typed_config:
        "@type": type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy
        codec: dubbo
        route_config_name: dubbo-routes
routes:
- name: dubbo-routes
  routes:
  - name: say-hello
    match:
      attributes:
      - {name: method, exact: sayHello}
    route:
      cluster: hello
      timeout: 3s
      request_mutation: [{key: x-route, value: say-hello}]
  - name: default
    match:
      attributes:
      - {name: interface, exact: org.example.Greeter}
    route:
      cluster: other
      timeout: 3s
clusters:
- name: hello
  connect_timeout: 1s
  load_assignment:
    cluster_name: hello
    endpoints:
    - lb_endpoints:
      - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}
- name: other
  connect_timeout: 1s
  load_assignment:
    cluster_name: other
    endpoints:
    - lb_endpoints:
      - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}
`

var greeter = dubbopeer.Service{Interface: "org.example.Greeter", Version: "1.0.0"}

// whoAmI answers with the provider's name and the x-route attachment it saw.
func whoAmI(name string) dubbopeer.Handler {
	return func(ctx context.Context, req *dubbopeer.Request) (any, error) {
		if req.Method == "fail" {
			return nil, errors.New("failed in " + name)
		}
		return fmt.Sprintf("%s %s route=%q", name, req.Method, req.Attachments["x-route"]), nil
	}
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startMesh runs two providers and a proxy in front of them and returns a
// consumer connected to the proxy.
func startMesh(t *testing.T) (*dubbopeer.Consumer, *dubbopeer.Provider, *dubbopeer.Provider) {
	t.Helper()
	var ps []*dubbopeer.Provider
	for _, name := range []string{"hello", "other"} {
		p, err := dubbopeer.Serve("127.0.0.1:0", name, whoAmI(name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		ps = append(ps, p)
	}
	px := proxytest.Start(t, fmt.Sprintf(proxyConfig, port(t, ps[0].Addr()), port(t, ps[1].Addr())))
	c, err := dubbopeer.Dial(px.Addr(t, "dubbo"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, ps[0], ps[1]
}

// TestThroughProxy: calls through the proxy reach the provider their route
// names, carry the route's mutation, and return the provider's value and
// attachments; heartbeats and oneway calls pass too.
func TestThroughProxy(t *testing.T) {
	c, hello, other := startMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct{ method, want string }{
		{"sayHello", `hello sayHello route="say-hello"`},
		{"sayGoodbye", `other sayGoodbye route=""`},
	} {
		v, atts, err := c.Call(ctx, greeter, tc.method, []any{"bob"}, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.method, err)
		}
		if v != tc.want || dubbopeer.ProviderName(atts) == "" {
			t.Fatalf("%s: got %v %v, want %s", tc.method, v, atts, tc.want)
		}
	}
	_, _, err := c.Call(ctx, greeter, "fail", nil, nil)
	var ex *dubbopeer.Exception
	if !errors.As(err, &ex) || ex.Message != "failed in other" {
		t.Fatalf("fail: got %v, want the provider's exception", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	before := hello.Calls()
	if err := c.Send(greeter, "sayHello", []any{"oneway"}, nil); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the oneway call to reach the provider", func() bool { return hello.Calls() != before })
	if other.Calls() != 2 {
		t.Fatalf("provider other served %d calls, want 2", other.Calls())
	}
}

// TestNoRoute: a call no route matches gets the proxy's local reply, Dubbo
// status 60, and the connection keeps working.
func TestNoRoute(t *testing.T) {
	c, _, _ := startMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := c.Call(ctx, dubbopeer.Service{Interface: "org.example.Missing"}, "find", nil, nil)
	var se *dubbopeer.StatusError
	if !errors.As(err, &se) || se.Status != dubbopeer.StatusServiceNotFound {
		t.Fatalf("got %v, want a status 60 error", err)
	}
	if se.Message == "" {
		t.Fatal("the status 60 reply has no message")
	}
	if _, _, err := c.Call(ctx, greeter, "sayHello", nil, nil); err != nil {
		t.Fatalf("the connection broke after a no-route reply: %v", err)
	}
}

// TestThroughProxyConcurrent: many concurrent calls over one downstream
// connection, multiplexed upstream by the proxy, each get their own answer.
func TestThroughProxyConcurrent(t *testing.T) {
	c, _, _ := startMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	prep, err := dubbopeer.Prepare(greeter, "sayHello", []any{"x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				method := fmt.Sprintf("m%d_%d", g, i)
				v, _, err := c.Call(ctx, greeter, method, nil, nil)
				if err == nil && v != fmt.Sprintf(`other %s route=""`, method) {
					err = fmt.Errorf("%s got %v", method, v)
				}
				if err == nil {
					err = c.CallPrepared(ctx, prep)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
