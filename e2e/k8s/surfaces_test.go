package k8s

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// deployment finds the Deployment named name among the rendered documents.
func deployment(t *testing.T, manifest []byte, name string) *appsv1.Deployment {
	t.Helper()
	for _, doc := range bytes.Split(manifest, []byte("\n---\n")) {
		if !bytes.Contains(doc, []byte("kind: Deployment")) {
			continue
		}
		var d appsv1.Deployment
		if err := yaml.Unmarshal(doc, &d); err != nil {
			t.Fatal(err)
		}
		if d.Name == name {
			return &d
		}
	}
	t.Fatalf("no Deployment %s rendered", name)
	return nil
}

// flagValue is the value of --name=value in args, and whether it is there.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name {
			return "true", true
		}
	}
	return "", false
}

// surface is what one HTTP server of a pod should look like in the chart.
type surface struct {
	deployment string
	// metricsFlag serves probes and /metrics on every interface; debugFlag
	// serves config dumps and pprof, on loopback unless exposeFlag.
	metricsFlag, debugFlag, exposeFlag string
	metricsPort, debugPort             int32
	// The binary whose flags the args must be.
	cmd string
}

var surfaces = []surface{
	{"rosetta-controller", "http-address", "debug-address", "expose-debug", 15014, 15015, "rosetta-controller"},
	{"rosetta-proxy", "metrics-address", "admin", "expose-admin", 15090, 15000, "rosetta-proxy"},
	{"rosetta-fallback", "metrics-address", "admin", "expose-admin", 15090, 15000, "rosetta-proxy"},
}

// fallbackOn renders the chart's lazy fallback proxies.
var fallbackOn = map[string]any{"fallbackProxy": map[string]any{"enabled": true}}

// TestChartKeepsDebugOnLoopback: by default the controller's debug server
// and the proxy's admin (config dumps, pprof) listen on 127.0.0.1 and are
// no container port; the port each pod exposes serves the probes and is
// the one Prometheus's annotations name. exposeDebug and exposeAdmin bind
// the debug servers to every interface, with the binaries' opt-in flag.
func TestChartKeepsDebugOnLoopback(t *testing.T) {
	proxyOn := map[string]any{"enabled": true}
	for _, s := range surfaces {
		t.Run(s.deployment, func(t *testing.T) {
			d := deployment(t, render(t, map[string]any{"proxy": proxyOn, "lazy": fallbackOn}), s.deployment)
			c := d.Spec.Template.Spec.Containers[0]
			checkFlagsExist(t, s.cmd, c.Args)
			debug, _ := flagValue(c.Args, s.debugFlag)
			if host, _, err := net.SplitHostPort(debug); err != nil || host != "127.0.0.1" {
				t.Errorf("--%s=%q, want 127.0.0.1:port", s.debugFlag, debug)
			}
			if _, ok := flagValue(c.Args, s.exposeFlag); ok {
				t.Errorf("--%s is set by default", s.exposeFlag)
			}
			checkMetricsExposed(t, d, s)
			if p := containerPort(c, s.debugPort); p != nil {
				t.Errorf("the debug port is a container port: %+v", *p)
			}
		})
	}
	exposed := map[string]any{"controller": map[string]any{"exposeDebug": true}, "proxy": map[string]any{"enabled": true, "exposeAdmin": true}, "lazy": fallbackOn}
	for _, s := range surfaces {
		t.Run(s.deployment+" exposed", func(t *testing.T) {
			d := deployment(t, render(t, exposed), s.deployment)
			c := d.Spec.Template.Spec.Containers[0]
			checkFlagsExist(t, s.cmd, c.Args)
			debug, _ := flagValue(c.Args, s.debugFlag)
			_, expose := flagValue(c.Args, s.exposeFlag)
			if host, _, err := net.SplitHostPort(debug); err != nil || host != "" || !expose {
				t.Errorf("--%s=%q, --%s %v; want every interface and the opt-in", s.debugFlag, debug, s.exposeFlag, expose)
			}
			if containerPort(c, s.debugPort) == nil {
				t.Errorf("the exposed debug port %d is no container port", s.debugPort)
			}
			checkMetricsExposed(t, d, s)
		})
	}
}

// checkMetricsExposed: the metrics server is on every interface, is a
// container port, serves the readiness probe, and is what the scrape
// annotations name.
func checkMetricsExposed(t *testing.T, d *appsv1.Deployment, s surface) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	addr, _ := flagValue(c.Args, s.metricsFlag)
	if host, port, err := net.SplitHostPort(addr); err != nil || host != "" || port != itoa(s.metricsPort) {
		t.Errorf("--%s=%q, want :%d", s.metricsFlag, addr, s.metricsPort)
	}
	p := containerPort(c, s.metricsPort)
	if p == nil {
		t.Fatalf("the metrics port %d is no container port: %+v", s.metricsPort, c.Ports)
	}
	if r := c.ReadinessProbe; r == nil || r.HTTPGet == nil || r.HTTPGet.Port.String() != p.Name {
		t.Errorf("the readiness probe is not on the metrics port %s: %+v", p.Name, r)
	}
	ann := d.Spec.Template.Annotations
	want := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": itoa(s.metricsPort), "prometheus.io/path": "/metrics"}
	for k, v := range want {
		if ann[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, ann[k], v)
		}
	}
}

func containerPort(c corev1.Container, port int32) *corev1.ContainerPort {
	for i := range c.Ports {
		if c.Ports[i].ContainerPort == port {
			return &c.Ports[i]
		}
	}
	return nil
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// checkFlagsExist: every --flag the chart passes is defined in the
// binary's sources (its own and internal/cli's, which the three binaries
// share), so a misspelt flag fails here rather than in a pod that cannot
// start.
func checkFlagsExist(t *testing.T, cmd string, args []string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repoRoot, "cmd", cmd, "*.go"))
	shared, _ := filepath.Glob(filepath.Join(repoRoot, "internal", "cli", "*.go"))
	files = append(files, shared...)
	var src []byte
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !bytes.Contains(src, []byte(strconv.Quote(name))) {
			t.Errorf("%s defines no flag %q (the chart passes %s)", cmd, name, a)
		}
	}
}
