package controller

import "testing"

// TestUnusedKinds: which objects are rejected, and which belong to another
// API.
func TestUnusedKinds(t *testing.T) {
	cases := []struct{ apiVersion, kind, reason string }{
		{"metaprotocol.rosetta.dev/v1alpha1", "MetaRuoter", ReasonUnknownKind},
		{"metaprotocol.rosetta.dev/v1alpha1", "metarouter", ReasonUnknownKind},
		{"networking.istio.io/v1", "DestinationRul", ReasonUnknownKind},
		{"metaprotocol.rosetta.dev/v1alpha1", "Widget", ReasonUnknownKind},
		{"metaprotocol.example.com/v1", "MetaRouter", ReasonUnknownGroup},
		{"networking.istio.io/v1", "MetaRouter", ReasonUnknownGroup},
		{"networking.istoi.io/v1", "ServiceEntry", ReasonUnknownGroup},
		{"networking.istoi.io/v1", "VirtualService", ReasonUnknownGroup},
		{"networking.istio.io/v1", "ProxyConfig", ReasonOtherAPI},
		{"serving.knative.dev/v1", "Service", ReasonOtherAPI},
		{"v1", "Node", ReasonOtherAPI},
		{"v1", "ConfigMap", ReasonOtherAPI},
		{"apps/v1", "Deployment", ReasonOtherAPI},
		{"", "MetaRouter", ReasonMissingType},
	}
	for _, c := range cases {
		in := &Inputs{}
		var unused []Unused
		in.addDocuments("f.yaml", []byte("apiVersion: "+c.apiVersion+"\nkind: "+c.kind+"\nmetadata: {name: x}\n"), &unused)
		if len(unused) != 1 || unused[0].Reason != c.reason {
			t.Errorf("%s %s: %+v, want reason %s", c.apiVersion, c.kind, unused, c.reason)
		}
	}
}

// A document that does not parse, and an object with an unknown field,
// are rejected with their document's index.
func TestInvalidDocumentsAreRejected(t *testing.T) {
	cases := map[string]struct {
		data   string
		doc    int
		reason string
	}{
		"syntax":        {"apiVersion: v1\nkind: ConfigMap\n---\nkind: [unclosed\n", 1, ReasonInvalidYAML},
		"unknown field": {"apiVersion: metaprotocol.rosetta.dev/v1alpha1\nkind: MetaRouter\nmetadata: {name: x}\nspec: {hots: [y]}\n", 0, ReasonInvalidObject},
		"list item":     {"apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: ConfigMap}, {apiVersion: metaprotocol.rosetta.dev/v1alpha1, kind: MetaRoute}]\n", 0, ReasonUnknownKind},
	}
	for name, c := range cases {
		in := &Inputs{}
		var unused []Unused
		in.addDocuments("f.yaml", []byte(c.data), &unused)
		rej := rejected(unused)
		if len(rej) != 1 || rej[0].Doc != c.doc || rej[0].Reason != c.reason {
			t.Errorf("%s: %+v", name, unused)
			continue
		}
		if err := in.AddYAML([]byte(c.data)); err == nil {
			t.Errorf("%s: AddYAML accepted it", name)
		}
	}
}
