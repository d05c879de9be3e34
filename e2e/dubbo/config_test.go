package dubbo

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"

	// The proxy finds the dubbo codec in the registry.
	_ "github.com/rosetta-mesh/rosetta/protocols/dubbo"
)

// obj is a JSON object. Configs are built as data and handed to the proxy
// as JSON, which its YAML reader accepts; the shape is the one of
// examples/dubbo/proxy.yaml.
type obj = map[string]any

// listenerName is the one listener each test proxy has.
const listenerName = "dubbo"

// proxyConfig is a test proxy's static config: one dubbo listener on a free
// loopback port with inline routes, and the clusters.
func proxyConfig(t testing.TB, routes []obj, clusters ...obj) string {
	t.Helper()
	filter := obj{
		"@type":        "type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy",
		"codec":        "dubbo",
		"route_config": obj{"name": "dubbo-routes", "routes": routes},
	}
	cfg := obj{
		"listeners": []obj{{
			"name":          listenerName,
			"address":       obj{"socket_address": obj{"address": "127.0.0.1", "port_value": 0}},
			"filter_chains": []obj{{"filters": []obj{{"name": "rosetta.metaprotocol", "typed_config": filter}}}},
		}},
		"clusters": clusters,
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// startProxy runs a proxy with the config and returns its listener address,
// one no earlier server of the process had (dubbokit.OnFreshPort).
func startProxy(t testing.TB, routes []obj, clusters ...obj) string {
	t.Helper()
	cfg := proxyConfig(t, routes, clusters...)
	return dubbokit.OnFreshPort(t, "proxy", func() (string, string) {
		addr := proxytest.Start(t, cfg).Addr(t, listenerName)
		return addr, addr
	})
}

// cluster is a round-robin cluster of the given addresses.
func cluster(t testing.TB, name string, addrs ...string) obj {
	t.Helper()
	var eps []obj
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, obj{"endpoint": obj{"address": obj{"socket_address": obj{"address": host, "port_value": p}}}})
	}
	return obj{
		"name":            name,
		"connect_timeout": "1s",
		"lb_policy":       "ROUND_ROBIN",
		"load_assignment": obj{"cluster_name": name, "endpoints": []obj{{"lb_endpoints": eps}}},
	}
}

// route sends requests whose attributes equal all of match to a cluster.
// A nil match matches every request.
func route(name string, match map[string]string, clusterName string, timeout time.Duration) obj {
	r := obj{"name": name, "route": obj{"cluster": clusterName, "timeout": fmt.Sprintf("%gs", timeout.Seconds())}}
	if len(match) > 0 {
		var attrs []obj
		for k, v := range match {
			attrs = append(attrs, obj{"name": k, "exact": v})
		}
		r["match"] = obj{"attributes": attrs}
	}
	return r
}
