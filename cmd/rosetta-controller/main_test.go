package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/observability"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
)

// freeAddr is a loopback address for the in-process controller's servers,
// whose addresses the test must know before run starts.
func freeAddr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)) }

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestFolderMode runs the command's folder mode in process: it becomes
// ready, serves a proxy over ADS, and reports it in /metrics and
// /debug/config_dump.
func TestFolderMode(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"mesh.yaml", "router-v1.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "pkg", "xds", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	xdsAddr, httpAddr, debugAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	f, err := parseFlags([]string{"--config-dir", dir, "--xds-address", xdsAddr, "--http-address", httpAddr, "--debug-address", debugAddr, "--debounce", "10ms"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, f, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	base := "http://" + httpAddr
	testutil.Eventually(t, 5*time.Second, "/readyz", func() bool { code, _ := get(base + "/readyz"); return code == 200 })
	if code, _ := get(base + "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}

	got := make(chan config.Resources, 16)
	cctx, ccancel := context.WithCancel(context.Background())
	defer ccancel()
	go func() {
		_ = client.Run(cctx, client.Options{Address: xdsAddr, NodeID: "p1", Namespace: "demo", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			func(r config.Resources) error { got <- r; return nil })
	}()
	select {
	case r := <-got:
		if len(r.Listeners) != 1 {
			t.Fatalf("%d listeners", len(r.Listeners))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no config")
	}
	testutil.Eventually(t, 5*time.Second, "metrics", func() bool {
		_, body := get(base + "/metrics")
		return strings.Contains(body, "rosetta_xds_connected_proxies 1") && strings.Contains(body, "rosetta_xds_propagation_seconds_count")
	})
	code, body := get("http://" + debugAddr + "/debug/config_dump?node=p1")
	if code != 200 || !strings.Contains(body, "greeter.demo.svc.cluster.local_20880") {
		t.Fatalf("config_dump: %d %s", code, body)
	}
	// The port Prometheus scrapes shows no configuration and takes no profiles.
	for _, path := range []string{"/debug/config_dump?node=p1", "/debug/pprof/", "/debug/pprof/profile?seconds=1"} {
		if code, _ := get(base + path); code != http.StatusNotFound {
			t.Errorf("%s on --http-address = %d, want 404", path, code)
		}
	}
	if code, _ := get("http://" + debugAddr + "/debug/pprof/"); code != 200 {
		t.Errorf("/debug/pprof/ on --debug-address = %d", code)
	}
}

// TestDebugOnLoopback: by default the debug server (config dumps, pprof)
// listens on loopback and the monitoring server on every interface; a
// debug address off loopback needs --expose-debug.
func TestDebugOnLoopback(t *testing.T) {
	f, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !observability.IsLoopback(f.debugAddr) {
		t.Errorf("default --debug-address %s is not loopback", f.debugAddr)
	}
	if host, _, _ := net.SplitHostPort(f.httpAddr); host != "" {
		t.Errorf("default --http-address %s is not on every interface", f.httpAddr)
	}
	for _, addr := range []string{":0", "0.0.0.0:0"} {
		f, err := parseFlags([]string{"--debug-address", addr})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := listenDebug(f); err == nil || !strings.Contains(err.Error(), "--expose-debug") {
			t.Errorf("--debug-address %s: %v, want a refusal naming --expose-debug", addr, err)
		}
	}
	f, err = parseFlags([]string{"--debug-address", ":0", "--expose-debug"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listenDebug(f)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

func TestFlags(t *testing.T) {
	if _, err := parseFlags([]string{"--debounce", "x"}); err == nil {
		t.Fatal("a bad duration was accepted")
	}
	if _, err := parseFlags([]string{"extra"}); err == nil {
		t.Fatal("a stray argument was accepted")
	}
	if f, err := parseFlags([]string{"--memory-limit", "900Mi"}); err != nil || f.memoryLimit != 900<<20 {
		t.Fatalf("--memory-limit 900Mi: %v", err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBECONFIG", "")
	for args, want := range map[string]string{
		"":                                    "--config-dir",
		"--log-level=loud --config-dir=x":     "--log-level",
		"--config-dir=x --kubeconfig=y":       "config-dir",
		"--steering-ports=9-1 --config-dir=x": "--steering-ports",
		"--trace-sampling=101 --config-dir=x": "--trace-sampling",
		"--trace-sampling=x --config-dir=x":   "--trace-sampling",
		"--lazy-fallback=a:1 --config-dir=x":  "--lazy-fallback",
		"--lazy-fallback=-a --config-dir=x":   "--lazy-fallback",
		"--memory-limit=1G --config-dir=x":    "--memory-limit",
	} {
		cmd := newCommand()
		cmd.SetArgs(strings.Fields(args))
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error naming %s", args, err, want)
		}
	}
	var help strings.Builder
	cmd := newCommand()
	cmd.SetArgs([]string{"--help"})
	cmd.SetOut(&help)
	if err := cmd.Execute(); err != nil || !strings.Contains(help.String(), "--config-dir FOLDER") {
		t.Errorf("--help: %v\n%s", err, help.String())
	}
}

// TestFolderModeUnreadable: a config folder that cannot be read ends the
// command with the reason.
func TestFolderModeUnreadable(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	f, err := parseFlags([]string{"--config-dir", missing, "--xds-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--debug-address="})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run(context.Background(), f, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "read config dir") || !strings.Contains(err.Error(), missing) {
			t.Fatalf("run on a missing folder: %v, want the folder's read error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run on a missing folder did not end")
	}
}

// The access log flags become the AccessLog every listener gets; a bad
// value is refused naming its flag.
func TestAccessLogFlags(t *testing.T) {
	f, err := parseFlags(nil)
	if err != nil || f.accessLog.config() != nil {
		t.Fatalf("default: %v, %v; want logs off", f.accessLog.config(), err)
	}
	f, err = parseFlags([]string{"--access-log-file=/dev/stdout", "--access-log-encoding=JSON", "--access-log-fields=route,status", "--access-log-sample-percent=10"})
	if err != nil {
		t.Fatal(err)
	}
	al := f.accessLog.config()
	if al.GetPath() != "/dev/stdout" || al.GetFormat() != configv1alpha1.AccessLog_JSON || len(al.GetFields()) != 2 || al.GetSamplePercent() != 10 {
		t.Errorf("config %v", al)
	}
	for _, tc := range []struct{ args, want string }{
		{"--access-log-encoding=XML", "--access-log-encoding: \"XML\" is not TEXT or JSON"},
		{"--access-log-fields=route,verb", "--access-log-fields: fields[1]: \"verb\" is not a field"},
		{"--access-log-sample-percent=200", "--access-log-sample-percent: sample_percent: 200 is not between 0 and 100"},
	} {
		_, err := parseFlags([]string{"--access-log-file=/dev/stdout", tc.args})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.args, err, tc.want)
		}
	}
}
