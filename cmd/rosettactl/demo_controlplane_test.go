package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const controlPlaneDir = "../../examples/controlplane/config"

// runControlPlane runs only the demo's control-plane part.
func runControlPlane(t *testing.T, o demoOptions) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := runControlPlaneDemo(ctx, &out, o)
	return out.String(), err
}

// TestDemoControlPlane: the controller, in folder mode on a copy of
// examples/controlplane/config, serves the proxy sayHello to v1 and sayBye
// to v2; after the MetaRouter file is edited (subsets swapped) the same
// connection's calls go sayHello to v2 and sayBye to v1. The example
// itself is left as it was.
func TestDemoControlPlane(t *testing.T) {
	before := readDir(t, controlPlaneDir)
	out, err := runControlPlane(t, demoOptions{controlPlaneDir: controlPlaneDir})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	edit := strings.Index(out, "Edited metarouter.yaml")
	if edit < 0 {
		t.Fatalf("no edit in:\n%s", out)
	}
	for _, tc := range []struct {
		part, method, who string
	}{
		{out[:edit], "sayHello", "v1"},
		{out[:edit], "sayBye", "v2"},
		{out[edit:], "sayHello", "v2"},
		{out[edit:], "sayBye", "v1"},
	} {
		m := regexp.MustCompile(`(?m)^  ` + tc.method + ` +answered by (\S+):`).FindStringSubmatch(tc.part)
		if m == nil || m[1] != tc.who {
			t.Errorf("%s answered as %q, want by %s\n%s", tc.method, m, tc.who, out)
		}
	}
	m := regexp.MustCompile(`the proxy followed the edit in (\d+) ms`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no propagation time in:\n%s", out)
	}
	if ms, _ := strconv.Atoi(m[1]); ms > int(cpWait/time.Millisecond) {
		t.Errorf("followed in %d ms", ms)
	}
	for _, want := range []string{
		"go run ./cmd/rosetta-controller --config-dir examples/controlplane/config --xds-address 127.0.0.1:15010 --http-address 127.0.0.1:15014",
		"go run ./cmd/rosetta-proxy --xds 127.0.0.1:15010 --node-id demo --namespace demo --listen-address 127.0.0.1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if after := readDir(t, controlPlaneDir); after != before {
		t.Errorf("the demo changed %s", controlPlaneDir)
	}
}

// TestDemoControlPlaneFirst: rosettactl demo runs the control-plane part
// before the others, and --skip-controlplane leaves it out.
func TestDemoControlPlaneFirst(t *testing.T) {
	out := mustRun(t, "demo", "--calls", "5", "--concurrency", "2")
	cp, dubbo := strings.Index(out, "Rosetta demo, control plane:"), strings.Index(out, "Rosetta demo: a Dubbo consumer")
	if cp != 0 || dubbo < 0 {
		t.Fatalf("control plane part at %d, Dubbo part at %d:\n%s", cp, dubbo, out)
	}
	out = mustRun(t, "demo", "--calls", "5", "--concurrency", "2", "--skip-controlplane")
	if strings.Contains(out, "control plane") {
		t.Fatalf("--skip-controlplane ran it:\n%s", out)
	}
}

// TestDemoControlPlaneSource: the default folder is found from a
// subdirectory of the repository; elsewhere the part says it is skipped;
// a --controlplane-config that is not a folder fails.
func TestDemoControlPlaneSource(t *testing.T) {
	got, err := controlPlaneSource("")
	if err != nil || filepath.Clean(got) != filepath.Clean(controlPlaneDir) {
		t.Fatalf("default source %q, %v; want %s", got, err, controlPlaneDir)
	}
	if _, err := controlPlaneSource("/no/such/folder"); err == nil || !strings.Contains(err.Error(), "--controlplane-config") {
		t.Errorf("missing folder: %v", err)
	}
	t.Chdir(t.TempDir())
	out, err := runControlPlane(t, demoOptions{})
	if err != nil || !strings.Contains(out, "control plane: skipped (examples/controlplane/config not found here") {
		t.Errorf("outside the repository: %v\n%s", err, out)
	}
}

// TestCopyControlPlaneConfig: ports are replaced in one pass (a new port
// that equals another old one is not replaced again), and a folder that
// lacks one of the expected ports fails with a clear error.
func TestCopyControlPlaneConfig(t *testing.T) {
	src := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(src, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "listen: 20880\nv1: 20881\nv2: 20882\n")
	write(cpRouterFile, "kind: MetaRouter\n")
	dst := t.TempDir()
	if err := copyControlPlaneConfig(src, dst, map[int]int{20880: 20881, 20881: 20882, 20882: 20880}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dst, "a.yaml")); got != "listen: 20881\nv1: 20882\nv2: 20880\n" {
		t.Errorf("copied:\n%s", got)
	}
	write("a.yaml", "listen: 20880\nv1: 20881\n")
	err := copyControlPlaneConfig(src, t.TempDir(), map[int]int{20880: 1, 20881: 2, 20882: 3})
	if err == nil || !strings.Contains(err.Error(), "does not mention port 20882") {
		t.Errorf("missing port: %v", err)
	}
}

// TestDemoControlPlaneFlags: the flags of the printed commands exist in the
// two binaries, so the hand-run instructions do not rot.
func TestDemoControlPlaneFlags(t *testing.T) {
	for file, flags := range map[string][]string{
		"../rosetta-controller/main.go": {"config-dir", "xds-address", "http-address"},
		"../rosetta-proxy/main.go":      {"xds", "node-id", "namespace", "listen-address"},
	} {
		src := readFile(t, file)
		for _, f := range flags {
			if !strings.Contains(src, `"`+f+`", `) {
				t.Errorf("%s defines no flag --%s", file, f)
			}
		}
	}
}

// readDir concatenates the files of dir, to tell whether they changed.
func readDir(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range files {
		b.WriteString(f + "\n" + readFile(t, f))
	}
	return b.String()
}
