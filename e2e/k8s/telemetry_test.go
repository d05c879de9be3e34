package k8s

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
)

// telemetryService is a Dubbo service in ns, and a Sidecar that keeps
// ns's proxies to ns's services.
func telemetryService(ns string, port int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: %[1]s}
spec:
  ports: [{name: tcp-dubbo, port: %[2]d}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: %[1]s}
spec:
  egress: [{hosts: ["./*"]}]
`, ns, port)
}

func telemetryObject(ns, name, spec string) string {
	return fmt.Sprintf("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: %s, namespace: %s}\nspec:\n%s", name, ns, spec)
}

// observability is the tracing and access log of the listener named name
// in res; ok is false when res has no such listener.
func observability(res config.Resources, name string) (tr *configv1alpha1.Tracing, al *configv1alpha1.AccessLog, ok bool) {
	for _, l := range res.Listeners {
		if l.GetName() != name {
			continue
		}
		var mpp configv1alpha1.MetaProtocolProxy
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&mpp); err != nil {
			return nil, nil, false
		}
		return mpp.GetTracing(), mpp.GetAccessLog(), true
	}
	return nil, nil, false
}

// sampling is the listener's sampling percentage, -1 without tracing, -2
// without the listener.
func sampling(rec *recorder, listener string) float64 {
	res, _, _ := rec.last()
	tr, _, ok := observability(res, listener)
	switch {
	case !ok:
		return -2
	case tr == nil:
		return -1
	}
	return tr.GetRandomSamplingPercentage()
}

// TestTelemetryOnTheAPIServer: Istio's Telemetry resources, read through
// informers with the chart's RBAC, set proxies' sampling and access logs
// as istiod resolves them: a root Telemetry for every proxy, a namespace's
// over it, one selecting a workload over that; an invalid update keeps the
// last valid version; deleting them restores the controller's flags.
func TestTelemetryOnTheAPIServer(t *testing.T) {
	c := needCluster(t)
	for _, ns := range []string{"istio-system", "telem-a", "telem-b"} {
		c.MustNamespace(t, ns)
	}
	portA, portB := testutil.FreePort(t), testutil.FreePort(t)
	c.MustKubectl(t, telemetryService("telem-a", portA)+"---\n"+telemetryService("telem-b", portB), "apply", "-f", "-")
	mesh := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(mesh, []byte("extensionProviders:\n- name: otel\n  opentelemetry: {service: otel-collector.istio-system.svc.cluster.local, port: 4317}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctrl := c.StartController(t, ctrlBin, "", "", "--mesh-config="+mesh, "--trace-sampling=3")
	a := startProxyClient(t, ctrl.XDSAddr, "telem-a-proxy", "telem-a")
	b := startProxyClient(t, ctrl.XDSAddr, "telem-b-proxy", "telem-b")
	labelled := &recorder{}
	runClient(t, client.Options{Address: ctrl.XDSAddr, NodeID: "telem-a-labelled", Namespace: "telem-a", Labels: map[string]string{"app": "loud"}}, labelled)
	listenerA := fmt.Sprintf("greeter.telem-a.svc.cluster.local_%d", portA)
	listenerB := fmt.Sprintf("greeter.telem-b.svc.cluster.local_%d", portB)
	waitSampling := func(what string, rec *recorder, listener string, want float64) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, what, func() bool { return sampling(rec, listener) == want })
	}
	t.Cleanup(func() {
		_, _ = c.Kubectl("", "delete", "telemetries.telemetry.istio.io", "--all", "-n", "istio-system")
		_, _ = c.Kubectl("", "delete", "telemetries.telemetry.istio.io", "--all", "-n", "telem-a")
	})

	waitSampling("the flag's 3% without a Telemetry", a, listenerA, 3)
	c.MustKubectl(t, telemetryObject("istio-system", "mesh-default", "  tracing: [{providers: [{name: otel}], randomSamplingPercentage: 10}]\n  accessLogging: [{providers: [{name: envoy}]}]\n"), "apply", "-f", "-")
	waitSampling("the root Telemetry's 10% in telem-a", a, listenerA, 10)
	waitSampling("the root Telemetry's 10% in telem-b", b, listenerB, 10)
	res, _, _ := a.last()
	if _, al, _ := observability(res, listenerA); al.GetPath() != "/dev/stdout" {
		t.Fatalf("access log %v, want the envoy provider's /dev/stdout", al)
	}

	c.MustKubectl(t, telemetryObject("telem-a", "ns", "  tracing: [{randomSamplingPercentage: 20}]\n"), "apply", "-f", "-")
	waitSampling("telem-a's own 20%", a, listenerA, 20)
	c.MustKubectl(t, telemetryObject("telem-a", "loud", "  selector: {matchLabels: {app: loud}}\n  tracing: [{randomSamplingPercentage: 100}]\n"), "apply", "-f", "-")
	waitSampling("the selected workload's 100%", labelled, listenerA, 100)
	if got := sampling(b, listenerB); got != 10 {
		t.Fatalf("telem-b's listener samples %v, want the root's 10", got)
	}

	// An unknown provider passes the API server's schema; the controller
	// keeps the namespace Telemetry's last valid version.
	c.MustKubectl(t, telemetryObject("telem-a", "ns", "  tracing: [{providers: [{name: jaeger}], randomSamplingPercentage: 50}]\n"), "apply", "-f", "-")
	if _, err := ctrl.Process.WaitLog(10*time.Second, regexp.MustCompile(regexp.QuoteMeta(`Telemetry telem-a/ns: spec.tracing[0].providers[0].name: \"jaeger\" is not a provider`))); err != nil {
		t.Fatal(err)
	}
	if got := sampling(a, listenerA); got != 20 {
		t.Fatalf("after an invalid update telem-a samples %v, want the last valid 20", got)
	}

	c.MustKubectl(t, "", "delete", "telemetries.telemetry.istio.io", "--all", "-n", "telem-a")
	waitSampling("the root's 10% again", a, listenerA, 10)
	c.MustKubectl(t, "", "delete", "telemetry.telemetry.istio.io/mesh-default", "-n", "istio-system")
	waitSampling("the flag's 3% again", a, listenerA, 3)
	res, _, _ = a.last()
	if _, al, _ := observability(res, listenerA); al != nil {
		t.Fatalf("access log %v after the Telemetries are gone, want the flag's none", al)
	}
}
