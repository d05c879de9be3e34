package config_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
)

// FuzzParse parses fuzzed static configs, seeded with the shipped
// examples (testdata/*-proxy.yaml are copies of examples/*/proxy.yaml,
// but for gateway-tls-proxy.yaml: a listener with its own certificate from
// secrets) and a listener reached only through HBONE (hboneYAML). A
// config Parse accepts must survive a round trip: written back in the
// protobuf JSON mapping, it parses to equal resources, and the proxy's
// Validate gives both the same verdict.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata: %v", err)
	}
	for _, name := range seeds {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(hboneYAML))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := config.Parse(data)
		if err != nil {
			return // refusing is Parse's right; the round trip is about what it accepts
		}
		again, err := config.Parse(marshal(t, b))
		if err != nil {
			t.Fatalf("an accepted config, written back, is refused: %v", err)
		}
		if again.Admin != b.Admin || !equal(b.Resources, again.Resources) {
			t.Fatal("an accepted config changed in a round trip")
		}
		first, second := proxy.Validate(b.Resources), proxy.Validate(again.Resources)
		if (first == nil) != (second == nil) || first != nil && first.Error() != second.Error() {
			t.Fatalf("Validate says %v, and %v after a round trip", first, second)
		}
	})
}

// marshal writes b back as a static config in the protobuf JSON mapping.
func marshal(t *testing.T, b *config.Bootstrap) []byte {
	t.Helper()
	doc := map[string]any{"admin": b.Admin}
	add := func(key string, ms []proto.Message) {
		var raw []json.RawMessage
		for _, m := range ms {
			js, err := protojson.Marshal(m)
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			raw = append(raw, js)
		}
		doc[key] = raw
	}
	for key, ms := range messages(b.Resources) {
		add(key, ms)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func messages(r config.Resources) map[string][]proto.Message {
	m := map[string][]proto.Message{}
	for _, x := range r.Listeners {
		m["listeners"] = append(m["listeners"], x)
	}
	for _, x := range r.Clusters {
		m["clusters"] = append(m["clusters"], x)
	}
	for _, x := range r.Endpoints {
		m["endpoints"] = append(m["endpoints"], x)
	}
	for _, x := range r.Routes {
		m["routes"] = append(m["routes"], x)
	}
	for _, x := range r.Secrets {
		m["secrets"] = append(m["secrets"], x)
	}
	return m
}

func equal(a, b config.Resources) bool {
	ma, mb := messages(a), messages(b)
	for _, key := range []string{"listeners", "clusters", "endpoints", "routes", "secrets"} {
		if len(ma[key]) != len(mb[key]) {
			return false
		}
		for i := range ma[key] {
			if !proto.Equal(ma[key][i], mb[key][i]) {
				return false
			}
		}
	}
	return true
}
