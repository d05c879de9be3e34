package main

import (
	"encoding/json"
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

// TestValidateWhatTheProxyRefuses: a service port or an endpoint port
// beyond 65535 is refused by the controller (which leaves it out rather
// than send what a proxy refuses), naming the resource and field.
func TestValidateWhatTheProxyRefuses(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"number: 20880", "number: 70000", `ServiceEntry demo/greeter: spec.ports[0].number: 70000 is not a port (1-65535); the port is left out`},
		{"tcp-dubbo: 20881", "tcp-dubbo: 70001", `ServiceEntry demo/greeter: spec.endpoints[0].ports[tcp-dubbo]: 70001 is not a port (1-65535); the endpoint is left out`},
	} {
		dir, _ := configDir(t)
		data, err := os.ReadFile(filepath.Join(dir, "greeter.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "greeter.yaml"), []byte(strings.Replace(string(data), tc.from, tc.to, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, "validate", dir)
		if err == nil || !strings.Contains(out, dir+": invalid: "+tc.want) {
			t.Errorf("%s: %v\n%s", tc.to, err, out)
		}
	}
}

// TestValidateObjectFiles: a file of MetaRouters, of Rosetta's apiVersion
// or Aeraki's, is read as the controller reads it: a bad field is
// reported with its path and the controller's message, as JSON too.
func TestValidateObjectFiles(t *testing.T) {
	data, err := os.ReadFile("../../examples/controlplane/config/metarouter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, api := range []string{"metaprotocol.rosetta.dev", "metaprotocol.aeraki.io"} {
		doc := strings.NewReplacer("metaprotocol.rosetta.dev", api, "{exact: sayHello}", `{regex: "say("}`).Replace(string(data))
		file := filepath.Join(t.TempDir(), "router.yaml")
		if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, "validate", file, "-o", "json")
		var r report
		if jerr := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &r); err == nil || jerr != nil {
			t.Fatalf("%s: %v %v\n%s", api, err, jerr, out)
		}
		found := false
		for _, f := range r.Findings {
			// An object of Aeraki's group is named "<name>@<group>", as the
			// controller names it in both modes.
			name := "demo/greeter"
			if api == "metaprotocol.aeraki.io" {
				name += "@metaprotocol.aeraki.io"
			}
			if f.Level == "invalid" && strings.Contains(f.Message, "MetaRouter "+name+": Accepted Invalid: spec.routes[0].match.attributes[method].regex: Invalid value: \"say(\"") {
				found = true
			}
		}
		if !found || r.Invalid != 1 {
			t.Errorf("%s: findings %+v", api, r)
		}
	}
}
