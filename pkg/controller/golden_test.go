package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/authz"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// testProxy is a test-only document kind (apiVersion test.rosetta.dev/v1,
// kind Proxy) naming the proxies a golden file generates for.
type testProxy struct {
	Kind          string            `json:"kind"`
	ID            string            `json:"id"`
	Namespace     string            `json:"namespace"`
	Labels        map[string]string `json:"labels"`
	Mode          string            `json:"mode"`
	ListenAddress string            `json:"listenAddress"`
	Identity      string            `json:"identity"`
}

func readProxies(t *testing.T, data []byte) []*Proxy {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*Proxy
	for {
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			break
		}
		if raw["kind"] != "Proxy" {
			continue
		}
		js, _ := json.Marshal(raw)
		var tp testProxy
		if err := json.Unmarshal(js, &tp); err != nil {
			t.Fatal(err)
		}
		out = append(out, &Proxy{ID: tp.ID, Namespace: tp.Namespace, Labels: tp.Labels, Mode: tp.Mode, ListenAddress: tp.ListenAddress, Identity: tp.Identity})
	}
	if len(out) == 0 {
		t.Fatal("no Proxy document")
	}
	return out
}

// fakeResolver answers for the names the golden files use, so tests do
// not depend on the machine's resolver.
func fakeResolver(_ context.Context, host string) ([]string, error) {
	switch host {
	case "thrift.example.com":
		return []string{"198.51.100.8", "198.51.100.7"}, nil
	}
	return nil, errors.New("no such host")
}

func buildFile(t *testing.T, path string) (*Index, []*Proxy) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in := &Inputs{}
	if err := in.AddYAML(data); err != nil {
		t.Fatal(err)
	}
	b := &Builder{Options: Options{Resolve: fakeResolver}}
	return b.Build(in), readProxies(t, data)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// compileAuthorization checks that every filter chain's authorization
// compiles with the proxy's own compiler, and that all the chains of a
// listener carry the same filter.
func compileAuthorization(t *testing.T, res *config.Resources) {
	t.Helper()
	for _, l := range res.Listeners {
		var first []byte
		for i, fc := range l.GetFilterChains() {
			tc := fc.GetFilters()[0].GetTypedConfig()
			if i == 0 {
				first = tc.GetValue()
			} else if !bytes.Equal(first, tc.GetValue()) {
				t.Errorf("%s: filter chain %d carries another filter than chain 0", l.GetName(), i)
			}
			var mpp configv1alpha1.MetaProtocolProxy
			if err := tc.UnmarshalTo(&mpp); err != nil {
				t.Fatal(err)
			}
			if _, err := authz.Compile(mpp.GetAuthorization()); err != nil {
				t.Errorf("%s: the proxy would refuse the authorization: %v", l.GetName(), err)
			}
		}
	}
}
