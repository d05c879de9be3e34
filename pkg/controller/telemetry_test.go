package controller

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
)

// telemetryMesh is a mesh config with an OpenTelemetry tracing provider
// and a JSON file access log provider.
const telemetryMesh = `
extensionProviders:
- name: otel
  opentelemetry: {service: otel-collector.istio-system.svc.cluster.local, port: 4317}
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
- name: json-file
  envoyFileAccessLog:
    path: /var/log/rosetta.log
    logFormat: {labels: {}}
`

func telemetryDoc(ns, name, spec string) string {
	return fmt.Sprintf("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: %s, namespace: %s, creationTimestamp: \"2026-01-01T00:00:0%dZ\"}\nspec: %s\n---\n", name, ns, len(name)%10, spec)
}

// observed builds in (the golden authorization mesh plus extra) and
// returns the tracing and access log of proxy's greeter listener, and the
// build's warnings.
func observed(t *testing.T, b *Builder, extra string, proxy *Proxy) (*configv1alpha1.Tracing, *configv1alpha1.AccessLog, []string) {
	t.Helper()
	in := &Inputs{}
	if err := in.AddYAML(mustRead(t, "testdata/golden/authorization.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := in.AddYAML([]byte(extra)); err != nil {
		t.Fatal(err)
	}
	ix := b.Build(in)
	mpp := listenerProxy(t, ix.Generate(proxy), "greeter.demo.svc.cluster.local_20880")
	return mpp.GetTracing(), mpp.GetAccessLog(), ix.Warnings()
}

func telemetryBuilder(t *testing.T, mesh string, sampling *float64, log *configv1alpha1.AccessLog) *Builder {
	t.Helper()
	mc, err := ParseMeshConfig([]byte(mesh))
	if err != nil {
		t.Fatal(err)
	}
	return &Builder{Options: Options{Resolve: fakeResolver, Mesh: mc, TraceSampling: sampling, AccessLog: log}}
}

// TestTelemetrySetsTracing: the Telemetries that apply to a proxy decide
// its listeners' sampling as istiod resolves them (workload over
// namespace over root), and the flag decides without them.
func TestTelemetrySetsTracing(t *testing.T) {
	flag := 2.5
	root := telemetryDoc("istio-system", "mesh-default", "{tracing: [{providers: [{name: otel}], randomSamplingPercentage: 10}]}")
	ns := telemetryDoc("demo", "demo", "{tracing: [{randomSamplingPercentage: 20}]}")
	workload := telemetryDoc("demo", "waypoint", "{selector: {matchLabels: {app: waypoint}}, tracing: [{randomSamplingPercentage: 30}]}")
	byGateway := telemetryDoc("demo", "by-ref", "{targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: rosetta-waypoint}], tracing: [{randomSamplingPercentage: 40}]}")
	waypoint := &Proxy{ID: "w", Namespace: "demo", Labels: map[string]string{"app": "waypoint", gatewayNameLabel: "rosetta-waypoint"}}
	plain := &Proxy{ID: "p", Namespace: "demo", Labels: map[string]string{"app": "plain"}}
	other := &Proxy{ID: "o", Namespace: "demo", Labels: map[string]string{"app": "other", gatewayNameLabel: "elsewhere"}}
	cases := []struct {
		name, docs, mesh string
		proxy            *Proxy
		want             float64 // -1: no tracing
	}{
		{"no Telemetry: the flag", "", telemetryMesh, plain, flag},
		{"root", root, telemetryMesh, plain, 10},
		{"namespace over root", root + ns, telemetryMesh, plain, 20},
		{"selector over namespace", root + ns + workload, telemetryMesh, waypoint, 30},
		{"a selector that does not match", root + ns + workload, telemetryMesh, plain, 20},
		{"targetRefs to the proxy's Gateway", root + ns + byGateway, telemetryMesh, waypoint, 40},
		{"targetRefs to another Gateway", root + ns + byGateway, telemetryMesh, other, 20},
		{"another namespace's Telemetry", root + telemetryDoc("shop", "shop", "{tracing: [{randomSamplingPercentage: 50}]}"), telemetryMesh, plain, 10},
		{"disableSpanReporting", root + telemetryDoc("demo", "demo", "{tracing: [{disableSpanReporting: true}]}"), telemetryMesh, plain, -1},
		{"no provider (as istiod: off)", telemetryDoc("istio-system", "mesh-default", "{tracing: [{randomSamplingPercentage: 10}]}"), telemetryMesh, plain, -1},
		{"the mesh's default provider", telemetryDoc("istio-system", "mesh-default", "{tracing: [{randomSamplingPercentage: 10}]}"), telemetryMesh + "defaultProviders: {tracing: [otel]}\n", plain, 10},
		{"a provider without a sampling: the flag's", telemetryDoc("istio-system", "mesh-default", "{tracing: [{providers: [{name: otel}]}]}"), telemetryMesh, plain, flag},
		{"CLIENT mode only is not the proxy's", root + telemetryDoc("demo", "demo", "{tracing: [{match: {mode: CLIENT}, randomSamplingPercentage: 20}]}"), telemetryMesh, plain, 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, _, _ := observed(t, telemetryBuilder(t, c.mesh, &flag, nil), c.docs, c.proxy)
			switch {
			case c.want < 0 && tr != nil:
				t.Fatalf("tracing %v, want none", tr)
			case c.want >= 0 && (tr == nil || tr.GetRandomSamplingPercentage() != c.want):
				t.Fatalf("tracing %v, want random_sampling_percentage %v", tr, c.want)
			}
		})
	}
}

// TestTelemetrySetsAccessLogs: accessLogging's providers name the path
// and format, disabled turns logs off below a Telemetry that turned them
// on, and the flag decides without a Telemetry.
func TestTelemetrySetsAccessLogs(t *testing.T) {
	sample := 50.0
	flag := &configv1alpha1.AccessLog{Path: "/dev/stderr", Fields: []string{"route"}, SamplePercent: &sample}
	plain := &Proxy{ID: "p", Namespace: "demo", Labels: map[string]string{"app": "plain"}}
	root := telemetryDoc("istio-system", "mesh-default", "{accessLogging: [{providers: [{name: envoy}]}]}")
	cases := []struct {
		name, docs string
		flag       *configv1alpha1.AccessLog
		want       string // path/format, "" for none
	}{
		{"no Telemetry: the flag", "", flag, "/dev/stderr/TEXT"},
		{"no Telemetry, no flag", "", nil, ""},
		{"Istio's built-in envoy provider", root, nil, "/dev/stdout/TEXT"},
		{"a JSON file provider", telemetryDoc("demo", "demo", "{accessLogging: [{providers: [{name: json-file}]}]}"), nil, "/var/log/rosetta.log/JSON"},
		{"disabled in the namespace", root + telemetryDoc("demo", "demo", "{accessLogging: [{disabled: true}]}"), flag, ""},
		{"disabled, then a workload's provider", root + telemetryDoc("demo", "demo", "{accessLogging: [{disabled: true}]}") +
			telemetryDoc("demo", "plain", "{selector: {matchLabels: {app: plain}}, accessLogging: [{providers: [{name: json-file}], disabled: false}]}"), nil, "/var/log/rosetta.log/JSON"},
		{"no provider and no default: off, as istiod", telemetryDoc("demo", "demo", "{accessLogging: [{disabled: false}]}"), flag, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, al, _ := observed(t, telemetryBuilder(t, telemetryMesh, nil, c.flag), c.docs, plain)
			got := ""
			if al != nil {
				got = al.GetPath() + "/" + al.GetFormat().String()
			}
			if got != c.want {
				t.Fatalf("access log %q (%v), want %q", got, al, c.want)
			}
			if al != nil && c.flag != nil && (al.GetSamplePercent() != sample || strings.Join(al.GetFields(), ",") != "route") {
				t.Fatalf("access log %v lost the flag's fields and sample rate", al)
			}
		})
	}
}

// TestInvalidTelemetryKeepsTheLastGood: a percentage over 100, an unknown
// provider or one of a kind the proxy does not export to is reported
// naming the field, and the Telemetry's last valid version stays in force
// (none: the flag's setting).
func TestInvalidTelemetryKeepsTheLastGood(t *testing.T) {
	flag := 2.5
	plain := &Proxy{ID: "p", Namespace: "demo", Labels: map[string]string{"app": "plain"}}
	good := telemetryDoc("istio-system", "mesh-default", "{tracing: [{providers: [{name: otel}], randomSamplingPercentage: 10}]}")
	for _, c := range []struct{ name, spec, field string }{
		{"over 100", "{tracing: [{providers: [{name: otel}], randomSamplingPercentage: 150}]}", "spec.tracing[0].randomSamplingPercentage: 150 is not from 0 to 100"},
		{"unknown provider", "{tracing: [{providers: [{name: jaeger}]}]}", `spec.tracing[0].providers[0].name: "jaeger" is not a provider`},
		{"a zipkin provider", "{tracing: [{providers: [{name: zipkin}]}]}", `spec.tracing[0].providers[0].name: provider "zipkin" is not an opentelemetry provider`},
		{"a tracing provider for logs", "{accessLogging: [{providers: [{name: otel}]}]}", `spec.accessLogging[0].providers[0].name: provider "otel" is not an envoyFileAccessLog provider`},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := telemetryDoc("istio-system", "mesh-default", c.spec)
			b := telemetryBuilder(t, telemetryMesh, &flag, nil)
			tr, _, warnings := observed(t, b, bad, plain)
			if tr.GetRandomSamplingPercentage() != flag || !hasWarning(warnings, "Telemetry istio-system/mesh-default: "+c.field, "it is not applied") {
				t.Fatalf("never valid: tracing %v, warnings %q", tr, warnings)
			}
			if tr, _, _ = observed(t, b, good, plain); tr.GetRandomSamplingPercentage() != 10 {
				t.Fatalf("valid: tracing %v, want 10", tr)
			}
			tr, _, warnings = observed(t, b, bad, plain)
			if tr.GetRandomSamplingPercentage() != 10 || !hasWarning(warnings, c.field, "its last valid version stays in force") {
				t.Fatalf("invalid update: tracing %v, warnings %q; want the last valid 10", tr, warnings)
			}
		})
	}
}

func hasWarning(warnings []string, parts ...string) bool {
	for _, w := range warnings {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(w, p)
		}
		if all {
			return true
		}
	}
	return false
}

// TestTelemetryWarnsOfWhatItIgnores: fields the proxies do not apply are
// named in the warnings.
func TestTelemetryWarnsOfWhatItIgnores(t *testing.T) {
	doc := telemetryDoc("demo", "demo", `{tracing: [{customTags: {a: {literal: {value: b}}}}], accessLogging: [{filter: {expression: "response.code >= 400"}}], metrics: [{providers: [{name: prometheus}]}]}`)
	_, _, warnings := observed(t, telemetryBuilder(t, telemetryMesh, nil, nil), doc, &Proxy{ID: "p", Namespace: "demo"})
	for _, f := range []string{"spec.tracing[0].customTags", "spec.accessLogging[0].filter", "spec.metrics"} {
		if !hasWarning(warnings, "Telemetry demo/demo: "+f) {
			t.Errorf("no warning naming %s in %q", f, warnings)
		}
	}
}

// TestTelemetryFromTheFolder: the folder source reads Telemetries.
func TestTelemetryFromTheFolder(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{
		"mesh.yaml":      string(mustRead(t, "testdata/golden/authorization.yaml")),
		"telemetry.yaml": telemetryDoc("istio-system", "mesh-default", "{tracing: [{providers: [{name: otel}], randomSamplingPercentage: 7}]}"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Telemetries) != 1 {
		t.Fatalf("%d Telemetries read, want 1 (unused: %v)", len(in.Telemetries), in.Unused)
	}
	ix := telemetryBuilder(t, telemetryMesh, nil, nil).Build(in)
	tr := listenerProxy(t, ix.Generate(&Proxy{ID: "p", Namespace: "demo"}), "greeter.demo.svc.cluster.local_20880").GetTracing()
	if tr.GetRandomSamplingPercentage() != 7 {
		t.Fatalf("tracing %v, want 7", tr)
	}
}

// TestParseMeshConfigRefusesUnknownFields: a misspelt mesh config field is
// an error, not a provider silently missing.
func TestParseMeshConfigRefusesUnknownFields(t *testing.T) {
	if _, err := ParseMeshConfig([]byte("extensionProvider: []\n")); err == nil {
		t.Fatal("a misspelt field was accepted")
	}
	if _, err := ParseMeshConfig([]byte("extensionProviders: [{opentelemetry: {port: 4317}}]\n")); err == nil || !strings.Contains(err.Error(), "extensionProviders[0].name") {
		t.Fatalf("a provider without a name: %v", err)
	}
}
