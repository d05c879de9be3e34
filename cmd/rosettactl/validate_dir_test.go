package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// configDir copies the controller's example folder to a temporary one,
// with edits applied to metarouter.yaml.
func configDir(t *testing.T, edits ...string) (dir, router string) {
	t.Helper()
	dir = t.TempDir()
	for _, f := range []string{"greeter.yaml", "metarouter.yaml"} {
		data, err := os.ReadFile(filepath.Join("../../examples/controlplane/config", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "metarouter.yaml" {
			data = []byte(strings.NewReplacer(edits...).Replace(string(data)))
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, filepath.Join(dir, "metarouter.yaml")
}

// TestValidateConfigDir: a controller config folder is valid as shipped; a
// misspelt kind, an unknown group or a MetaRouter the controller would
// not accept make it invalid, with the file, document and object named.
func TestValidateConfigDir(t *testing.T) {
	dir, _ := configDir(t)
	if out := mustRun(t, "validate", dir); !strings.Contains(out, dir+": ok (1 MetaRouter") {
		t.Fatalf("the example folder:\n%s", out)
	}
	cases := []struct {
		name  string
		edits []string
		want  []string
	}{
		{"misspelt kind", []string{"kind: MetaRouter", "kind: MetaRuoter"},
			[]string{"rejected: ", "metarouter.yaml: document 0: ", `unknown kind "MetaRuoter"; did you mean MetaRouter?`, "(MetaRuoter demo/greeter)"}},
		{"unknown group", []string{"metaprotocol.rosetta.dev", "metaprotocol.rosseta.dev"},
			[]string{"rejected: ", "metarouter.yaml: document 0: ", `MetaRouter is read from group`, `not from group "metaprotocol.rosseta.dev"`}},
		{"unknown field", []string{"routes:", "rutes:"},
			[]string{"rejected: ", "metarouter.yaml: document 0: ", "rutes"}},
		{"invalid MetaRouter", []string{"{exact: sayHello}", `{regex: "say("}`},
			[]string{"invalid: MetaRouter demo/greeter: Accepted"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, router := configDir(t, c.edits...)
			out, err := run(t, "validate", dir)
			if err == nil {
				t.Fatalf("validate accepted the folder:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, strings.ReplaceAll(w, "metarouter.yaml", router)) {
					t.Errorf("output lacks %q:\n%s", strings.ReplaceAll(w, "metarouter.yaml", router), out)
				}
			}
		})
	}
}
