// Package proxytest runs a Rosetta proxy in-process for tests.
package proxytest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/tracing"
)

// Proxy is a running proxy.
type Proxy struct {
	*proxy.Proxy
	// AdminAddr is where /ready, /metrics and /config_dump are served.
	AdminAddr string
}

// Start applies a static YAML config (the format of examples/*/proxy.yaml; an
// admin address is not needed) and serves it until the test ends. It fails
// the test when the config is invalid.
func Start(t testing.TB, yamlConfig string) *Proxy {
	t.Helper()
	return StartWithIdentity(t, yamlConfig, nil)
}

// StartWithIdentity is Start for a proxy with a workload identity (nil:
// none), which Istio mutual TLS in the config needs.
func StartWithIdentity(t testing.TB, yamlConfig string, id *identity.Workload) *Proxy {
	t.Helper()
	return start(t, yamlConfig, id, nil, nil)
}

// StartWithLimits is Start for a proxy with limits other than
// proxy.DefaultLimits.
func StartWithLimits(t testing.TB, yamlConfig string, lim proxy.Limits) *Proxy {
	t.Helper()
	return start(t, yamlConfig, nil, &lim, nil)
}

// StartWithTracer is Start for a proxy whose traced listeners make spans
// with tr.
func StartWithTracer(t testing.TB, yamlConfig string, tr *tracing.Tracer) *Proxy {
	t.Helper()
	return start(t, yamlConfig, nil, nil, tr)
}

func start(t testing.TB, yamlConfig string, id *identity.Workload, lim *proxy.Limits, tr *tracing.Tracer) *Proxy {
	t.Helper()
	boot, err := config.Parse([]byte(yamlConfig))
	if err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("ROSETTA_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p := proxy.New(log)
	if lim != nil {
		p.SetLimits(*lim)
	}
	if id != nil {
		p.UseIdentity(id)
	}
	if tr != nil {
		p.UseTracer(tr)
	}
	if err := p.Apply(boot.Resources); err != nil {
		t.Fatalf("proxytest: apply: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxytest: admin: %v", err)
	}
	go func() { _ = p.ServeAdmin(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
		ln.Close()
	})
	return &Proxy{Proxy: p, AdminAddr: ln.Addr().String()}
}

// Addr returns a listener's bound address, failing the test if there is none.
func (p *Proxy) Addr(t testing.TB, listener string) string {
	t.Helper()
	a, ok := p.Proxy.Addr(listener)
	if !ok {
		t.Fatalf("proxytest: no listener %q", listener)
	}
	return a
}

// Get fetches an admin path and returns the body.
func (p *Proxy) Get(t testing.TB, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.AdminAddr + path)
	if err != nil {
		t.Fatalf("proxytest: GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("proxytest: GET %s: %v", path, err)
	}
	return string(b)
}
