package testutil

import (
	"encoding/json"
	"testing"
)

// ListenerConfig is the static config of a proxy with one MetaProtocol
// listener, name, on a loopback port the kernel picks, decoding codec and
// serving routeConfig (a RouteConfiguration, inline), and clusters.
func ListenerConfig(t testing.TB, name, codec string, routeConfig map[string]any, clusters ...map[string]any) string {
	t.Helper()
	filter := map[string]any{
		"@type":        "type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy",
		"codec":        codec,
		"route_config": routeConfig,
	}
	b, err := json.Marshal(map[string]any{
		"listeners": []map[string]any{{
			"name":          name,
			"address":       map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": 0}},
			"filter_chains": []map[string]any{{"filters": []map[string]any{{"name": "rosetta.metaprotocol", "typed_config": filter}}}},
		}},
		"clusters": clusters,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
