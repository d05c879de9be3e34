// Package controllertest is the test kit of the controller and of its
// translators (protocols/<name>/control): golden files that state a
// translation (YAML in, every proxy's xDS resources and every status out),
// and the checks that hold generated resources to what the proxy accepts.
package controllertest

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/authz"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
)

var update = flag.Bool("update", false, "rewrite the golden files")

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
	// Lazy and Learned make a proxy in lazy mode and the destinations it
	// reported.
	Lazy    bool     `json:"lazy"`
	Learned []string `json:"learned"`
}

// ReadProxies reads the Proxy documents of a golden input; it fails t
// when there is none.
func ReadProxies(t *testing.T, data []byte) []*controller.Proxy {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*controller.Proxy
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
		p := &controller.Proxy{ID: tp.ID, Namespace: tp.Namespace, Labels: tp.Labels, Mode: tp.Mode, ListenAddress: tp.ListenAddress, Identity: tp.Identity, Lazy: tp.Lazy}
		if tp.Lazy {
			p.Learned = map[string]bool{}
			for _, d := range tp.Learned {
				p.Learned[d] = true
			}
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		t.Fatal("no Proxy document")
	}
	return out
}

// ReadFile reads a golden input: its objects and its proxies.
func ReadFile(t *testing.T, path string) (*controller.Inputs, []*controller.Proxy) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in := &controller.Inputs{}
	if err := in.AddYAML(data); err != nil {
		t.Fatal(err)
	}
	return in, ReadProxies(t, data)
}

// BuildFile builds an Index of a golden input with opts, and reads its
// proxies.
func BuildFile(t *testing.T, path string, opts controller.Options) (*controller.Index, []*controller.Proxy) {
	t.Helper()
	in, proxies := ReadFile(t, path)
	b := &controller.Builder{Options: opts}
	return b.Build(in), proxies
}

// Golden translates each file pattern matches (*.yaml) and compares the
// xDS resources of each proxy, every MetaRouter's status (and the other
// kinds' statuses, one section per protocol, and the build's warnings,
// when there are any) with the matching .json file. Run with -update to
// rewrite them. Every proxy's resources must pass Check.
func Golden(t *testing.T, pattern string, opts controller.Options) {
	files, _ := filepath.Glob(pattern)
	if len(files) == 0 {
		t.Fatalf("no golden inputs %s", pattern)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			ix, proxies := BuildFile(t, f, opts)
			out := statuses(ix)
			dumps := map[string]*controller.Dump{}
			for _, p := range proxies {
				res := ix.Generate(p)
				Check(t, p, res)
				d, err := controller.DumpResources(res)
				if err != nil {
					t.Fatal(err)
				}
				dumps[p.ID] = d
			}
			out["proxies"] = dumps
			compare(t, strings.TrimSuffix(f, ".yaml")+".json", out)
		})
	}
}

// statuses are the status sections of a golden output: "status" (the
// MetaRouters'), "<protocol>Status" for each translator with statuses,
// "authorizationStatus" and "warnings" when not empty.
func statuses(ix *controller.Index) map[string]any {
	out := map[string]any{"status": ix.Statuses}
	all := ix.ProtocolStatuses()
	for _, t := range controller.Translators() {
		mine := map[string]controller.RouterStatus{}
		for k, st := range all {
			for _, kind := range t.Kinds {
				if strings.HasPrefix(k, kind.Kind+"/") {
					mine[k] = st
				}
			}
		}
		if len(mine) > 0 {
			out[t.Protocol+"Status"] = mine
		}
	}
	if as := ix.AuthorizationStatuses(); len(as) > 0 {
		out["authorizationStatus"] = as
	}
	if ws := ix.Warnings(); len(ws) > 0 {
		out["warnings"] = ws
	}
	return out
}

// compare compares out, as indented JSON without condition timestamps,
// with the golden file, or rewrites it with -update.
func compare(t *testing.T, golden string, out any) {
	t.Helper()
	got, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = normalizeTimes(t, got)
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the generated output (go test -run %s -update to accept):\n%s", golden, t.Name(), got)
	}
}

// normalizeTimes re-indents through YAML-free JSON, dropping condition
// timestamps, which are set when the status is written.
func normalizeTimes(t *testing.T, js []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		t.Fatal(err)
	}
	drop(v)
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func drop(v any) {
	switch x := v.(type) {
	case map[string]any:
		delete(x, "lastTransitionTime")
		for _, c := range x {
			drop(c)
		}
	case []any:
		for _, c := range x {
			drop(c)
		}
	}
}

// Check holds a proxy's resources to what the proxy accepts: every
// listener's authorization compiles, and TLS is as the proxy's identity
// allows.
func Check(t *testing.T, p *controller.Proxy, res *config.Resources) {
	t.Helper()
	CompileAuthorization(t, res)
	CheckTLS(t, p, res)
}

// CheckTLS holds a proxy's resources to the mTLS contract: a proxy
// without an identity gets no TLS anywhere (today's output); every TLS
// context is one the proxy's reader accepts.
func CheckTLS(t *testing.T, p *controller.Proxy, res *config.Resources) {
	t.Helper()
	for _, l := range res.Listeners {
		for i, fc := range l.GetFilterChains() {
			if p.Identity == "" && (fc.GetFilterChainMatch() != nil || fc.GetTransportSocket() != nil || len(l.GetFilterChains()) != 1) {
				t.Errorf("%s: %s: filter chain %d has TLS settings for a proxy without an identity", p.ID, l.GetName(), i)
			}
			if _, err := config.DownstreamTLS(fc.GetTransportSocket()); err != nil {
				t.Errorf("%s: %s: filter chain %d: the proxy would refuse it: %v", p.ID, l.GetName(), i, err)
			}
		}
	}
	for _, c := range res.Clusters {
		if p.Identity == "" && (c.GetTransportSocket() != nil || len(c.GetTransportSocketMatches()) > 0) {
			t.Errorf("%s: %s: TLS for a proxy without an identity", p.ID, c.GetName())
		}
		if _, err := config.UpstreamTLS(c.GetTransportSocket()); err != nil {
			t.Errorf("%s: %s: the proxy would refuse it: %v", p.ID, c.GetName(), err)
		}
		for _, m := range c.GetTransportSocketMatches() {
			if _, err := config.UpstreamTLS(m.GetTransportSocket()); err != nil {
				t.Errorf("%s: %s: match %s: the proxy would refuse it: %v", p.ID, c.GetName(), m.GetName(), err)
			}
		}
	}
	for _, cla := range res.Endpoints {
		for _, le := range cla.GetEndpoints() {
			for _, e := range le.GetLbEndpoints() {
				if _, tls := e.GetMetadata().GetFilterMetadata()[config.TransportSocketMatchKey]; p.Identity == "" && tls {
					t.Errorf("%s: %s: TLS endpoint metadata for a proxy without an identity", p.ID, cla.GetClusterName())
				}
			}
		}
	}
}

// CompileAuthorization checks that every filter chain's authorization
// compiles with the proxy's own compiler, and that all the chains of a
// listener carry the same filter.
func CompileAuthorization(t *testing.T, res *config.Resources) {
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
