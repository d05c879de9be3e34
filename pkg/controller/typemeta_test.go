package controller

import (
	"testing"

	"sigs.k8s.io/yaml"
)

// readTypeMeta's shortcut must read what parsing the YAML reads, the
// scalars that are not strings in the decoded map included.
func TestReadTypeMetaAgreesWithTheYAMLDecoder(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: ns}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
		"kind: Service\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: 1.10, namespace: ns}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: 007}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: true}\n",
		"apiVersion: v1\nkind: Service\nmetadata: a\n",
		"apiVersion: 1\nkind: Service\n",
	} {
		var raw map[string]any
		if err := yaml.Unmarshal([]byte(doc), &raw); err != nil {
			t.Fatal(err)
		}
		js, err := yaml.Marshal(raw)
		if err != nil {
			t.Fatal(err)
		}
		var want typeMeta
		wantErr := yaml.Unmarshal(js, &want)
		got, err := readTypeMeta(raw, js)
		if (err != nil) != (wantErr != nil) || got != want {
			t.Errorf("%q: read %+v (%v), the YAML decoder reads %+v (%v)", doc, got, err, want, wantErr)
		}
	}
}

// Each YAML document is decoded from its own text: a syntax error costs
// only its document, not the documents after it.
func TestYAMLDocumentsDecodedFromTheirOwnText(t *testing.T) {
	var in Inputs
	var unused []Unused
	in.addDocuments("f.yaml", []byte(`apiVersion: v1
kind: Service
metadata: {name: a, namespace: ns}
---
kind: [unclosed
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: ns}
`), &unused)
	if len(unused) != 1 || unused[0].Doc != 1 || unused[0].Reason != ReasonInvalidYAML {
		t.Fatalf("unused %+v, want document 1's syntax error alone", unused)
	}
	if len(in.Services) != 2 || in.Services[1].Name != "b" {
		t.Fatalf("services %d, want a and b", len(in.Services))
	}
}
