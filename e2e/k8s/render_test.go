package k8s

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	corev1 "k8s.io/api/core/v1"
)

var update = flag.Bool("update", false, "rewrite manifests/rendered from the chart")

var repoRoot = filepath.Join("..", "..")

// render renders the chart like `helm template --include-crds`.
func render(t *testing.T, values map[string]any) []byte {
	t.Helper()
	ch, err := loader.Load(filepath.Join(repoRoot, "manifests", "charts", "rosetta"))
	if err != nil {
		t.Fatal(err)
	}
	inst := action.NewInstall(&action.Configuration{})
	inst.DryRun, inst.ClientOnly, inst.IncludeCRDs, inst.Replace = true, true, true, true
	inst.ReleaseName, inst.Namespace = "rosetta", "rosetta-system"
	inst.KubeVersion = &chartutil.KubeVersion{Version: "v1.36.3", Major: "1", Minor: "36"}
	rel, err := inst.Run(ch, values)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(rel.Manifest)
}

// renderedFiles are the plain-YAML forms of the chart, committed so that
// `kubectl apply -f` works without Helm.
var renderedFiles = map[string]map[string]any{
	"rosetta.yaml":               nil,
	"proxy-example.yaml":         {"createNamespace": false, "proxy": map[string]any{"enabled": true, "namespace": "demo"}},
	"lazy-fallback-example.yaml": {"createNamespace": false, "lazy": map[string]any{"fallbackProxy": map[string]any{"enabled": true}}},
}

// renderedTemplates are the templates whose documents an example file
// keeps; the other files keep every document.
var renderedTemplates = map[string]string{
	"proxy-example.yaml":         "proxy.yaml",
	"lazy-fallback-example.yaml": "lazy-fallback.yaml",
}

// TestRenderedManifestsMatchChart: manifests/rendered/*.yaml are what the
// chart renders (go test -run TestRendered -update rewrites them), and the
// chart's CRDs are crds/.
func TestRenderedManifestsMatchChart(t *testing.T) {
	for name, values := range renderedFiles {
		got := render(t, values)
		if tmpl, ok := renderedTemplates[name]; ok {
			got = onlyTemplate(t, got, tmpl)
		}
		path := filepath.Join(repoRoot, "manifests", "rendered", name)
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -run TestRendered -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what the chart renders; run go test -run TestRendered -update in e2e/k8s", path)
		}
	}
	crds, _ := filepath.Glob(filepath.Join(repoRoot, "crds", "*.yaml"))
	if len(crds) != 6 {
		t.Fatalf("%d CRDs in crds/", len(crds))
	}
	for _, c := range crds {
		a, _ := os.ReadFile(c)
		b, err := os.ReadFile(filepath.Join(repoRoot, "manifests", "charts", "rosetta", "crds", filepath.Base(c)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("the chart's copy of %s differs; run hack/update-codegen.sh", filepath.Base(c))
		}
	}
}

// onlyTemplate keeps the documents rendered from templates/<tmpl>.
func onlyTemplate(t *testing.T, all []byte, tmpl string) []byte {
	t.Helper()
	var out [][]byte
	for _, doc := range bytes.Split(all, []byte("\n---\n")) {
		if bytes.Contains(doc, []byte("# Source: rosetta/templates/"+tmpl)) {
			out = append(out, bytes.TrimPrefix(doc, []byte("---\n")))
		}
	}
	if len(out) == 0 {
		t.Fatalf("the template %s rendered nothing", tmpl)
	}
	return append([]byte("---\n"), append(bytes.Join(out, []byte("\n---\n")), '\n')...)
}

// redisCredentialRoles renders the chart's Role and RoleBinding that let
// the controller read the named Secrets of namespace ns.
func redisCredentialRoles(t *testing.T, ns string, secrets ...string) string {
	t.Helper()
	return credentialRoles(t, "redisCredentials", ns, secrets...)
}

// credentialRoles renders the Role and RoleBinding of one entry of the
// chart's value (redisCredentials or gatewayCredentials).
func credentialRoles(t *testing.T, value, ns string, secrets ...string) string {
	t.Helper()
	all := render(t, map[string]any{value: []any{map[string]any{"namespace": ns, "secrets": secrets}}})
	var out []string
	for _, doc := range bytes.Split(all, []byte("\n---\n")) {
		if bytes.Contains(doc, []byte("# Source: rosetta/templates/credentials.yaml")) {
			out = append(out, string(doc))
		}
	}
	if len(out) != 2 {
		t.Fatalf("%s rendered %d documents, want a Role and a RoleBinding", value, len(out))
	}
	return strings.Join(out, "\n---\n")
}

// TestProxyHBONEValue: proxy.hbone adds the HBONE flag and port 15008 to
// the waypoint's Deployment and Service, and nothing when off.
func TestProxyHBONEValue(t *testing.T) {
	on := string(render(t, map[string]any{"proxy": map[string]any{"enabled": true, "hbone": true}}))
	for _, want := range []string{"--hbone-address=:15008", "{name: tcp-hbone, containerPort: 15008}", "{name: tcp-hbone, port: 15008, targetPort: 15008}"} {
		if !strings.Contains(on, want) {
			t.Errorf("proxy.hbone=true: no %q", want)
		}
	}
	if off := string(render(t, map[string]any{"proxy": map[string]any{"enabled": true}})); strings.Contains(off, "hbone") {
		t.Error("proxy.hbone=false still renders HBONE")
	}
}

// TestLazyFallbackProxyValue: lazy.fallbackProxy.enabled renders the
// fallback's Deployment (rosetta-proxy, not lazy, with the mesh
// identity of its own ServiceAccount), the ServiceAccount and a headless
// Service without ports, and points the controller's --lazy-fallback at
// that Service's DNS name unless lazy.fallback names another; off, it
// renders none of them.
func TestLazyFallbackProxyValue(t *testing.T) {
	on := render(t, map[string]any{"lazy": fallbackOn})
	d := deployment(t, on, "rosetta-fallback")
	c := d.Spec.Template.Spec.Containers[0]
	if _, lazy := flagValue(c.Args, "lazy"); lazy {
		t.Error("the fallback proxy runs in lazy mode")
	}
	for flag, want := range map[string]string{"mode": "gateway", "identity": "istiod", "namespace": "$(POD_NAMESPACE)"} {
		if got, _ := flagValue(c.Args, flag); got != want {
			t.Errorf("the fallback proxy's --%s=%q, want %q", flag, got, want)
		}
	}
	if sa, tls := d.Spec.Template.Spec.ServiceAccountName, d.Spec.Template.Labels["security.istio.io/tlsMode"]; sa != "rosetta-fallback" || tls != "istio" {
		t.Errorf("the fallback's pods: ServiceAccount %q, tlsMode %q; want rosetta-fallback, istio", sa, tls)
	}
	svcs := renderedObjects[corev1.Service](t, on, "lazy-fallback.yaml", "Service")
	if len(svcs) != 1 || svcs[0].Spec.ClusterIP != corev1.ClusterIPNone || len(svcs[0].Spec.Ports) != 0 || svcs[0].Spec.Selector["app"] != "rosetta-fallback" {
		t.Errorf("the fallback's Service = %+v, want one headless Service without ports selecting its pods", svcs)
	}
	controllerFallback := func(values map[string]any) (string, bool) {
		return flagValue(deployment(t, render(t, values), "rosetta-controller").Spec.Template.Spec.Containers[0].Args, "lazy-fallback")
	}
	if got, _ := controllerFallback(map[string]any{"lazy": fallbackOn}); got != "rosetta-fallback.rosetta-system.svc.cluster.local" {
		t.Errorf("--lazy-fallback=%q, want the fallback Service's DNS name", got)
	}
	own := map[string]any{"lazy": map[string]any{"fallback": "fb.other.svc.cluster.local", "fallbackProxy": map[string]any{"enabled": true}}}
	if got, _ := controllerFallback(own); got != "fb.other.svc.cluster.local" {
		t.Errorf("--lazy-fallback=%q, want lazy.fallback's", got)
	}
	off := render(t, nil)
	if bytes.Contains(off, []byte("rosetta/templates/lazy-fallback.yaml")) {
		t.Error("the fallback proxies are rendered while lazy.fallbackProxy.enabled is false")
	}
	if got, ok := controllerFallback(nil); ok {
		t.Errorf("--lazy-fallback=%q without a fallback", got)
	}
}
