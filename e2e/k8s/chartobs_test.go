package k8s

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/rosetta-mesh/rosetta/pkg/controller"
)

// renderedObjects are the documents of a render that come from template
// (the file name under templates/), decoded into T when their kind is kind.
func renderedObjects[T any](t *testing.T, all []byte, template, kind string) []*T {
	t.Helper()
	var out []*T
	for _, doc := range bytes.Split(all, []byte("\n---\n")) {
		if !bytes.Contains(doc, []byte("# Source: rosetta/templates/"+template)) || !bytes.Contains(doc, []byte("\nkind: "+kind+"\n")) {
			continue
		}
		v := new(T)
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			t.Fatalf("%s: %v", template, err)
		}
		out = append(out, v)
	}
	return out
}

// TestChartShipsTheDashboards: by default the chart renders one ConfigMap
// per manifests/dashboards file, labelled for Grafana's sidecar, holding
// the file byte for byte; dashboards.enabled=false renders none.
func TestChartShipsTheDashboards(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "manifests", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	cms := renderedObjects[corev1.ConfigMap](t, render(t, nil), "dashboards.yaml", "ConfigMap")
	if len(cms) != len(files) {
		t.Fatalf("%d dashboard ConfigMaps, want one per file (%d)", len(cms), len(files))
	}
	byKey := map[string]*corev1.ConfigMap{}
	for _, cm := range cms {
		if cm.Labels["grafana_dashboard"] != "1" || cm.Namespace != "rosetta-system" {
			t.Errorf("ConfigMap %s/%s labels %v: want grafana_dashboard \"1\" in rosetta-system", cm.Namespace, cm.Name, cm.Labels)
		}
		for k := range cm.Data {
			byKey[k] = cm
		}
	}
	for _, f := range files {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cm := byKey[filepath.Base(f)]
		if cm == nil {
			t.Fatalf("no ConfigMap holds %s", filepath.Base(f))
		}
		if got := cm.Data[filepath.Base(f)]; strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
			t.Errorf("ConfigMap %s's %s differs from the file", cm.Name, filepath.Base(f))
		}
	}
	off := render(t, map[string]any{"dashboards": map[string]any{"enabled": false}})
	if n := len(renderedObjects[corev1.ConfigMap](t, off, "dashboards.yaml", "ConfigMap")); n != 0 {
		t.Fatalf("dashboards.enabled=false rendered %d ConfigMaps", n)
	}
	other := render(t, map[string]any{"dashboards": map[string]any{"namespace": "monitoring"}})
	for _, cm := range renderedObjects[corev1.ConfigMap](t, other, "dashboards.yaml", "ConfigMap") {
		if cm.Namespace != "monitoring" {
			t.Fatalf("dashboards.namespace=monitoring put %s in %s", cm.Name, cm.Namespace)
		}
	}
}

// TestChartMeshConfig: mesh.config becomes a ConfigMap the controller
// reads with --mesh-config, and parses as Istio's MeshConfig.
func TestChartMeshConfig(t *testing.T) {
	providers := map[string]any{
		"extensionProviders": []any{map[string]any{"name": "otel", "opentelemetry": map[string]any{"service": "otel.istio-system.svc.cluster.local", "port": 4317}}},
		"defaultProviders":   map[string]any{"tracing": []any{"otel"}},
	}
	all := render(t, map[string]any{"mesh": map[string]any{"config": providers}})
	cms := renderedObjects[corev1.ConfigMap](t, all, "controller.yaml", "ConfigMap")
	if len(cms) != 1 || cms[0].Name != "rosetta-mesh-config" {
		t.Fatalf("mesh config ConfigMaps: %v", cms)
	}
	mc, err := controller.ParseMeshConfig([]byte(cms[0].Data["mesh"]))
	if err != nil {
		t.Fatal(err)
	}
	if got := mc.GetExtensionProviders()[0].GetOpentelemetry().GetPort(); got != 4317 || mc.GetDefaultProviders().GetTracing()[0] != "otel" {
		t.Fatalf("mesh config %v", mc)
	}
	deps := renderedObjects[appsv1.Deployment](t, all, "controller.yaml", "Deployment")
	if len(deps) != 1 {
		t.Fatalf("%d controller Deployments", len(deps))
	}
	pod := deps[0].Spec.Template.Spec
	mounted := false
	for _, m := range pod.Containers[0].VolumeMounts {
		mounted = mounted || (m.Name == "mesh-config" && m.MountPath == "/etc/rosetta/mesh")
	}
	hasVolume := false
	for _, v := range pod.Volumes {
		hasVolume = hasVolume || (v.ConfigMap != nil && v.ConfigMap.Name == "rosetta-mesh-config")
	}
	args := strings.Join(pod.Containers[0].Args, " ")
	if !mounted || !hasVolume || !strings.Contains(args, "--mesh-config=/etc/rosetta/mesh/mesh") {
		t.Fatalf("controller: mounted %v, volume %v, args %s", mounted, hasVolume, args)
	}
	if bytes.Contains(render(t, nil), []byte("--mesh-config")) {
		t.Fatal("the default render passes --mesh-config")
	}
}
