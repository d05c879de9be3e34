package controller_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/controller/controllertest"
)

// FuzzTranslate feeds arbitrary YAML through the folder decoder, the
// index and the generator: bad input is an error, never a panic.
func FuzzTranslate(f *testing.F) {
	files, _ := filepath.Glob("testdata/golden/*.yaml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Service}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &controller.Inputs{}
		if err := in.AddYAML(data); err != nil {
			return
		}
		b := &controller.Builder{Options: goldenOptions}
		ix := b.Build(in)
		for _, ns := range []string{"", "demo", "istio-system"} {
			for _, id := range []string{"", "spiffe://cluster.local/ns/" + ns + "/sa/p"} {
				p := &controller.Proxy{Namespace: ns, Identity: id, Labels: map[string]string{"app": "waypoint"}}
				res := ix.Generate(p)
				if _, err := controller.DumpResources(res); err != nil {
					t.Fatalf("generated resources do not encode: %v", err)
				}
				controllertest.Check(t, p, res)
			}
		}
	})
}
