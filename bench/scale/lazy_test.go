package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestTinyLazyMesh runs the harness in lazy mode: each proxy holds the
// routes of the services it called only, so its config is smaller than
// in a run without lazy mode, and an edit reaches only the proxies that
// called the service.
func TestTinyLazyMesh(t *testing.T) {
	base := options{services: 20, proxies: 4, namespaces: 2, xdsMode: "delta", edits: 8, gap: 100 * time.Millisecond,
		timeout: 2 * time.Minute, dir: t.TempDir(), keep: true}
	eager, err := run(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	lazy := base
	lazy.lazy, lazy.lazyCalls, lazy.dir = true, 5, t.TempDir()
	res, err := run(context.Background(), lazy)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	res.print(&out)
	t.Log("\n" + out.String())
	if res.configBytes <= 0 || res.configBytes >= eager.configBytes {
		t.Errorf("config per proxy %d bytes in lazy mode, %d without: want less", res.configBytes, eager.configBytes)
	}
	// Proxies 0 and 2 of ns-0 called services 0-8 and 10-18 (even), 1
	// and 3 of ns-1 the odd ones: each service has one caller, where
	// without lazy mode an edit reaches both proxies of its namespace.
	if res.receivers != 1 || eager.receivers != 2 {
		t.Errorf("%.2f proxies per edit in lazy mode, %.2f without: want 1 and 2", res.receivers, eager.receivers)
	}
	if len(res.latency) != lazy.edits {
		t.Errorf("%d edits measured, want %d", len(res.latency), lazy.edits)
	}
	if res.stray != 0 {
		t.Errorf("%d responses went to proxies that did not call the edited service", res.stray)
	}
}
