package controller

import (
	"fmt"
	"strings"
	"testing"
)

// TestInboundMode states which PeerAuthentication sets a listener's mTLS
// mode: workload (selector) over namespace over mesh (root namespace),
// port-level over the workload's own mode, UNSET inheriting, PERMISSIVE
// when nothing applies.
func TestInboundMode(t *testing.T) {
	// pa is a PeerAuthentication; those named "new-*" are a day younger.
	pa := func(name, ns, extra string) string {
		day := 1
		if strings.HasPrefix(name, "new-") {
			day = 2
		}
		return fmt.Sprintf("---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: %s, namespace: %s, creationTimestamp: \"2026-01-0%dT00:00:00Z\"}\nspec: %s\n",
			name, ns, day, extra)
	}
	mesh := func(mode string) string { return pa("mesh", "istio-system", "{mtls: {mode: "+mode+"}}") }
	nsWide := func(mode string) string { return pa("ns", "demo", "{mtls: {mode: "+mode+"}}") }
	workload := func(mode, ports string) string {
		return pa("wl", "demo", "{selector: {matchLabels: {app: waypoint}}, mtls: {mode: "+mode+"}, portLevelMtls: {"+ports+"}}")
	}
	cases := []struct {
		name, docs string
		port       uint32
		want       mtlsMode
	}{
		{"nothing: permissive", "", 20880, mtlsPermissive},
		{"mesh", mesh("STRICT"), 20880, mtlsStrict},
		{"mesh unset: permissive", mesh("UNSET"), 20880, mtlsPermissive},
		{"namespace over mesh", mesh("STRICT") + nsWide("DISABLE"), 20880, mtlsDisable},
		{"namespace unset inherits the mesh", mesh("STRICT") + nsWide("UNSET"), 20880, mtlsStrict},
		{"workload over namespace", nsWide("DISABLE") + workload("STRICT", ""), 20880, mtlsStrict},
		{"workload unset inherits the namespace", nsWide("DISABLE") + workload("UNSET", ""), 20880, mtlsDisable},
		{"port level over the workload", workload("STRICT", "20880: {mode: PERMISSIVE}"), 20880, mtlsPermissive},
		{"port level for another port", workload("STRICT", "20881: {mode: DISABLE}"), 20880, mtlsStrict},
		{"port level unset inherits", mesh("DISABLE") + workload("UNSET", "20880: {mode: UNSET}"), 20880, mtlsDisable},
		{"a workload policy of another namespace does not apply",
			pa("wl", "other", "{selector: {matchLabels: {app: waypoint}}, mtls: {mode: STRICT}}"), 20880, mtlsPermissive},
		{"a selector the proxy does not match does not apply",
			pa("wl", "demo", "{selector: {matchLabels: {app: other}}, mtls: {mode: STRICT}}"), 20880, mtlsPermissive},
		{"a namespace policy of another namespace does not apply", pa("ns", "other", "{mtls: {mode: STRICT}}"), 20880, mtlsPermissive},
		{"a root-namespace policy with a selector is not mesh-wide",
			pa("m", "istio-system", "{selector: {matchLabels: {app: waypoint}}, mtls: {mode: STRICT}}"), 20880, mtlsPermissive},
		{"the oldest namespace policy wins", pa("new-a", "demo", "{mtls: {mode: DISABLE}}") + pa("z", "demo", "{mtls: {mode: STRICT}}"), 20880, mtlsStrict},
	}
	p := &Proxy{Namespace: "demo", Labels: map[string]string{"app": "waypoint"}, Identity: "spiffe://cluster.local/ns/demo/sa/w"}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := &Inputs{}
			if err := in.AddYAML([]byte(c.docs)); err != nil {
				t.Fatal(err)
			}
			ix := (&Builder{}).Build(in)
			if got := ix.inboundMode(p, c.port); got != c.want {
				t.Fatalf("mode %s, want %s", got, c.want)
			}
		})
	}
}

func TestTrustDomain(t *testing.T) {
	cases := []struct{ option, identity, want string }{
		{"", "", "cluster.local"},
		{"", "spiffe://example.org/ns/a/sa/b", "example.org"},
		{"mesh.example", "spiffe://example.org/ns/a/sa/b", "mesh.example"},
		{"", "not-a-spiffe-id", "cluster.local"},
	}
	for _, c := range cases {
		ix := (&Builder{Options: Options{TrustDomain: c.option}}).Build(&Inputs{})
		if got := ix.trustDomain(&Proxy{Identity: c.identity}); got != c.want {
			t.Errorf("trustDomain(%q, %q) = %q, want %q", c.option, c.identity, got, c.want)
		}
	}
}
