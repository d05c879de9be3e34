package controller_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/controller/controllertest"
)

// writeFile replaces path by a new file (as editors and kubectl do), so
// the loader sees a new inode whatever the clock's resolution.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// exampleDir copies examples/controlplane/config (sayHello to v1 on
// 20881, the rest to v2 on 20882) to a temporary folder.
func exampleDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"greeter.yaml", "metarouter.yaml"} {
		data, err := os.ReadFile(filepath.Join("../../examples/controlplane/config", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, f), string(data))
	}
	return dir
}

// sayHelloGoesTo is where the folder's config sends sayHello.
func sayHelloGoesTo(t *testing.T, b *controller.Builder, in *controller.Inputs) string {
	t.Helper()
	res := b.Build(in).Generate(&controller.Proxy{ID: "p", Namespace: "demo", ListenAddress: "127.0.0.1"})
	_, eps := controllertest.Simulate(t, res, 20880, map[string]string{"method": "sayHello"})
	return strings.Join(eps, " ")
}

// A MetaRouter whose kind is misspelt in an edit is reported with its
// file, document and name, counted, and the file's previous MetaRouter
// stays in force (the proxy does not fall back to the default route).
func TestMisspeltKindKeepsTheFilesLastGoodVersion(t *testing.T) {
	dir := exampleDir(t)
	router := filepath.Join(dir, "metarouter.yaml")
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	loader := &controller.DirLoader{Dir: dir}
	p := &controller.Pipeline{Inputs: loader.Load, Push: func(*controller.Index, time.Time) {}, Log: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: controller.NewMetrics(reg)}
	b := &controller.Builder{}

	in, err := loader.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got := sayHelloGoesTo(t, b, in); got != "127.0.0.1:20881" {
		t.Fatalf("before the edit sayHello goes to %q", got)
	}
	// The edit sends sayHello to v2 too, but misspells the kind; a second
	// document in front makes the index worth checking.
	good, err := os.ReadFile("../../examples/controlplane/config/metarouter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	edited := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes, namespace: demo}\n---\n" +
		strings.Replace(strings.Replace(string(good), "kind: MetaRouter", "kind: MetaRuoter", 1), "subset: v1", "subset: v2", 1)
	writeFile(t, router, edited)
	in, err = loader.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got := sayHelloGoesTo(t, b, in); got != "127.0.0.1:20881" {
		t.Fatalf("after the misspelt edit sayHello goes to %q, want the last good route to 127.0.0.1:20881", got)
	}
	rej := controller.Rejected(in.Unused)
	if len(rej) != 1 {
		t.Fatalf("rejected %v, want the MetaRuoter", in.Unused)
	}
	u := rej[0]
	if u.File != router || u.Doc != 1 || u.Kind != "MetaRuoter" || u.Name != "demo/greeter" || u.Reason != controller.ReasonUnknownKind || !u.PreviousInForce {
		t.Fatalf("rejection %+v", u)
	}
	if !strings.Contains(u.String(), "did you mean MetaRouter?") {
		t.Fatalf("message %q does not name the kind meant", u.String())
	}

	p.PushNow(time.Now())
	line := logs.String()
	for _, want := range []string{"config object rejected", "file=" + router, "document=1", "kind=MetaRuoter", "name=demo/greeter", "previous_in_force=true"} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}
	if got := testutil.ToFloat64(p.Metrics.Rejected.WithLabelValues(controller.ReasonUnknownKind)); got != 1 {
		t.Errorf("rejected{reason=unknown_kind} = %v, want 1", got)
	}

	// Fixed: the edit takes effect and the gauge goes back to 0.
	writeFile(t, router, strings.Replace(edited, "kind: MetaRuoter", "kind: MetaRouter", 1))
	p.PushNow(time.Now())
	if got := testutil.ToFloat64(p.Metrics.Rejected.WithLabelValues(controller.ReasonUnknownKind)); got != 0 {
		t.Errorf("rejected{reason=unknown_kind} = %v after the fix, want 0", got)
	}
	in, err = loader.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got := sayHelloGoesTo(t, b, in); got != "127.0.0.1:20882" {
		t.Fatalf("after the fix sayHello goes to %q, want the edited route to 127.0.0.1:20882", got)
	}
}

// A new file with a rejected document adds nothing (not even its good
// documents) and is reported as such; a file of another API is skipped
// without a rejection.
func TestNewFileWithRejectedDocumentAddsNothing(t *testing.T) {
	dir := exampleDir(t)
	writeFile(t, filepath.Join(dir, "extra.yaml"), `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: other, namespace: demo}
spec: {host: other.demo.svc.cluster.local}
---
apiVersion: metaprotocol.rosseta.dev/v1alpha1
kind: MetaRouter
metadata: {name: other, namespace: demo}
spec: {hosts: [other.demo.svc.cluster.local]}
`)
	writeFile(t, filepath.Join(dir, "deploy.yaml"), "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n")
	in, err := controller.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.DestinationRules) != 1 || len(in.MetaRouters) != 1 {
		t.Fatalf("%d DestinationRules and %d MetaRouters, want only the example's", len(in.DestinationRules), len(in.MetaRouters))
	}
	rej := controller.Rejected(in.Unused)
	if len(rej) != 1 || rej[0].Reason != controller.ReasonUnknownGroup || rej[0].Doc != 1 || rej[0].PreviousInForce ||
		!strings.Contains(rej[0].String(), "nothing of the file is in force") {
		t.Fatalf("rejected %+v", rej)
	}
	if len(in.Unused) != 2 || in.Unused[0].Kind != "Deployment" || in.Unused[0].Rejected() {
		t.Fatalf("unused %+v, want the Deployment skipped but not rejected", in.Unused)
	}
}
