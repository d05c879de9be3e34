package trpc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"trpc.group/trpc-go/trpc-go/client"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
	rtrpc "github.com/rosetta-mesh/rosetta/protocols/trpc"
)

type obj = map[string]any

func endpoint(addr string) obj {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return obj{"endpoint": obj{"address": obj{"socket_address": obj{"address": host, "port_value": p}}}}
}

func clusterFor(name, addr string) obj {
	return obj{"name": name, "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN",
		"load_assignment": obj{"cluster_name": name, "endpoints": []obj{{"lb_endpoints": []obj{endpoint(addr)}}}}}
}

// startProxy runs the proxy with a tRPC listener: calls whose trans_info has
// x-env=canary go to b, other SayHello calls to a, anything else has no route.
func startProxy(t *testing.T, a, b string) string {
	t.Helper()
	cfg := obj{
		"listeners": []obj{{
			"name":    "trpc",
			"address": obj{"socket_address": obj{"address": "127.0.0.1", "port_value": 0}},
			"filter_chains": []obj{{"filters": []obj{{
				"name": "rosetta.metaprotocol",
				"typed_config": obj{
					"@type":             "type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy",
					"codec":             rtrpc.Name,
					"route_config_name": "routes",
				},
			}}}},
		}},
		"routes": []obj{{"name": "routes", "routes": []obj{
			{"name": "canary", "match": obj{"attributes": []obj{{"name": "x-env", "exact": "canary"}}},
				"route": obj{"cluster": "b", "timeout": "3s"}},
			{"name": "hello", "match": obj{"attributes": []obj{{"name": "func", "exact": sayHello}}},
				"route": obj{"cluster": "a", "timeout": "3s"}},
		}}},
		"clusters": []obj{clusterFor("a", a), clusterFor("b", b)},
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := proxytest.Start(t, string(js))
	return p.Addr(t, "trpc")
}

// TestThroughProxy: a real trpc-go client calls two real trpc-go servers
// through the proxy, routed by func and by a trans_info entry, with many
// calls in flight so request ids are rewritten on shared upstream
// connections; a call no route matches comes back as a trpc-go framework
// error.
func TestThroughProxy(t *testing.T) {
	a, b := startServer(t, "a"), startServer(t, "b")
	addr := startProxy(t, a, b)
	ctx := context.Background()

	for _, multiplexed := range []bool{false, true} {
		var wg sync.WaitGroup
		errc := make(chan error, 100)
		for g := 0; g < 10; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					name := fmt.Sprintf("g%d-%d", g, i)
					opts := clientOpts(addr, client.WithMultiplexed(multiplexed))
					want := "a: hello " + name
					if i%2 == 1 {
						opts = append(opts, client.WithMetaData("x-env", []byte("canary")))
						want = "b: hello " + name
					}
					got, err := callHello(ctx, sayHello, name, opts...)
					if err != nil || got != want {
						errc <- fmt.Errorf("multiplexed=%v: %s: got %q, %v; want %q", multiplexed, name, got, err, want)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
	}

	// A oneway call reaches its server and gets no answer.
	if _, err := callHello(ctx, sayHello, "oneway-1", clientOpts(addr, client.WithSendOnly(),
		client.WithMetaData("x-env", []byte("canary")))...); err != nil {
		t.Fatalf("oneway call: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "the oneway call at b", func() bool { _, ok := seen.Load("b: oneway-1"); return ok })

	// A business error from the server passes through unchanged.
	_, err := callHello(ctx, failHello, "zed", clientOpts(addr, client.WithMetaData("x-env", []byte("canary")))...)
	if err == nil || !strings.Contains(err.Error(), "b: no hello for zed") {
		t.Errorf("FailHello through the proxy: %v, want b's business error", err)
	}

	// No route: the proxy's local reply is a framework error for trpc-go.
	_, err = callHello(ctx, failHello, "zed", clientOpts(addr)...)
	frameError(t, err, int(rtrpc.RetServerNoFunc), "")
}
