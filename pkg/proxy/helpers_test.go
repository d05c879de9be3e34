package proxy_test

import (
	"encoding/json"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

// obj is a JSON object; configs are built as data and given to the proxy as
// JSON, which its YAML reader accepts.
type obj = map[string]any

func listener(name, routes string, extra obj) obj {
	filter := obj{
		"@type":             "type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy",
		"codec":             "toy",
		"route_config_name": routes,
	}
	for k, v := range extra {
		filter[k] = v
	}
	return obj{
		"name":          name,
		"address":       obj{"socket_address": obj{"address": "127.0.0.1", "port_value": 0}},
		"filter_chains": []obj{{"filters": []obj{{"name": "rosetta.metaprotocol", "typed_config": filter}}}},
	}
}

func cluster(name, lb string, addrs ...string) obj {
	var eps []obj
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		eps = append(eps, obj{"endpoint": obj{"address": obj{"socket_address": obj{"address": host, "port_value": p}}}})
	}
	if lb == "" {
		lb = "ROUND_ROBIN"
	}
	return obj{"name": name, "connect_timeout": "1s", "lb_policy": lb,
		"load_assignment": obj{"cluster_name": name, "endpoints": []obj{{"lb_endpoints": eps}}}}
}

func match(attr, exact string) obj {
	return obj{"attributes": []obj{{"name": attr, "exact": exact}}}
}

func route(name string, m obj, action obj) obj {
	r := obj{"name": name, "route": action}
	if m != nil {
		r["match"] = m
	}
	return r
}

func routeConfig(name string, routes ...obj) obj { return obj{"name": name, "routes": routes} }

func configJSON(t testing.TB, listeners []obj, routes []obj, clusters []obj) string {
	t.Helper()
	b, err := json.Marshal(obj{"listeners": listeners, "routes": routes, "clusters": clusters})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// named starts a toy server that answers with its name and echoes the body.
func named(t testing.TB, name string) (*toy.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	s, err := toy.Serve("127.0.0.1:0", func(r *toy.Request) *toy.Response {
		hits.Add(1)
		return &toy.Response{Headers: map[string]string{"server": name}, Body: r.Body}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, &hits
}

func dial(t testing.TB, addr string) *toy.Client {
	t.Helper()
	c, err := toy.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func call(t testing.TB, c *toy.Client, headers map[string]string) *toy.Response {
	t.Helper()
	r, err := c.Call(headers, []byte("x"))
	if err != nil {
		t.Fatalf("call %v: %v", headers, err)
	}
	return r
}

// answeredBy calls and returns the server that answered, failing on an error.
func answeredBy(t testing.TB, c *toy.Client, headers map[string]string) string {
	t.Helper()
	r := call(t, c, headers)
	if err := r.Err(); err != nil {
		t.Fatalf("call %v: %v", headers, err)
	}
	return r.Headers["server"]
}

func start(t testing.TB, listeners, routes, clusters []obj) *proxytest.Proxy {
	t.Helper()
	return proxytest.Start(t, configJSON(t, listeners, routes, clusters))
}

func statusOf(r *toy.Response) string {
	if r.Status == 0 {
		return "ok"
	}
	return codec.Status(r.Status - 1).String()
}
