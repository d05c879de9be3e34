package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const aerakiFile = "testdata/aeraki/aeraki.yaml"

// TestConvertAeraki: Aeraki's kinds come out in Rosetta's groups, the
// field Rosetta lacks and the status are left out and reported, other
// objects pass unchanged, and the result validates as the controller
// reads it, where the Aeraki original is rejected for that field.
func TestConvertAeraki(t *testing.T) {
	out := mustRun(t, "convert-aeraki", "testdata/aeraki")
	var yamlOnly []string
	for _, line := range strings.SplitAfter(out, "\n") {
		if !strings.HasPrefix(line, "dropped: ") { // the report, on standard error
			yamlOnly = append(yamlOnly, line)
		}
	}
	converted := strings.Join(yamlOnly, "")
	for _, want := range []string{"apiVersion: metaprotocol.rosetta.dev/v1alpha1\nkind: MetaRouter",
		"apiVersion: metaprotocol.rosetta.dev/v1alpha1\nkind: ApplicationProtocol",
		"apiVersion: redis.rosetta.dev/v1alpha1\nkind: RedisService", "apiVersion: redis.rosetta.dev/v1alpha1\nkind: RedisDestination",
		"apiVersion: v1\nkind: Service", "weight: 20", "exact: sayHello", "mode: PROXY"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, gone := range []string{"aeraki.io", "weightHint", "status"} {
		if strings.Contains(converted, gone) {
			t.Errorf("output has %q:\n%s", gone, converted)
		}
	}
	want := aerakiFile + `: document 0: MetaRouter demo/greeter: spec.routes[0].route[0].destination.weightHint (3) Rosetta's MetaRouter has no such field`
	if !strings.Contains(out, "dropped: "+want) {
		t.Errorf("the report lacks %q:\n%s", want, out)
	}

	file := filepath.Join(t.TempDir(), "rosetta.yaml")
	if err := os.WriteFile(file, []byte(converted), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "validate", file); err != nil || !strings.Contains(out, ": ok (1 MetaRouter") {
		t.Errorf("validate of the converted file: %v\n%s", err, out)
	}
	if out, err := run(t, "validate", aerakiFile); err == nil || !strings.Contains(out, "weightHint") {
		t.Errorf("validate of the Aeraki original: %v\n%s", err, out)
	}

	var c conversion
	if err := json.Unmarshal([]byte(mustRun(t, "convert-aeraki", aerakiFile, "-o", "json")), &c); err != nil {
		t.Fatal(err)
	}
	if c.Converted != 4 || len(c.Objects) != 5 || len(c.Dropped) != 2 || c.Dropped[1].Field != "spec.routes[0].route[0].destination.weightHint" {
		t.Errorf("json: %d converted, %d objects, dropped %+v", c.Converted, len(c.Objects), c.Dropped)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: MetaRouter\nspec: [1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"convert-aeraki", bad}, {"convert-aeraki", "/no/such/dir"}} {
		if out, err := run(t, args...); err == nil {
			t.Errorf("%v did not fail:\n%s", args, out)
		}
	}
}
