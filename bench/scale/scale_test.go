package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestTinyMesh runs the harness on a tiny mesh and checks that what it
// reports is sane: every proxy synced, every edit reached exactly the
// proxies of its namespace, a burst made at least one push and at most
// one per edit. It checks no timing.
func TestTinyMesh(t *testing.T) {
	for _, mode := range []string{"delta", "sotw"} {
		t.Run(mode, func(t *testing.T) { testTinyMesh(t, mode) })
	}
}

// testTinyMesh runs TestTinyMesh with the proxies subscribed by mode.
func testTinyMesh(t *testing.T, mode string) {
	o := options{services: 20, proxies: 3, namespaces: 2, xdsMode: mode, edits: 6, gap: 150 * time.Millisecond, burst: 30,
		timeout: 2 * time.Minute, dir: t.TempDir(), keep: true}
	res, err := run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	res.print(&out)
	t.Log("\n" + out.String())

	if res.synced <= 0 || res.started <= 0 {
		t.Errorf("start %v, sync %v: want both measured", res.started, res.synced)
	}
	if res.configBytes == 0 {
		t.Error("the proxies received no config")
	}
	if len(res.latency) != o.edits {
		t.Fatalf("%d edits measured, want %d", len(res.latency), o.edits)
	}
	for i, l := range res.latency {
		if l <= 0 {
			t.Errorf("edit %d: latency %v", i+1, l)
		}
	}
	// Proxies 0 and 2 are in ns-0, proxy 1 in ns-1: the edits alternate
	// over both (service 7919*k mod 20).
	if res.receivers < 1 || res.receivers > 2 {
		t.Errorf("%.2f receivers per edit, want 1 to 2", res.receivers)
	}
	if res.responses < 1 {
		t.Errorf("%.2f responses per receiving proxy per edit, want at least 1", res.responses)
	}
	if res.resources < 1 || res.bytes <= 0 {
		t.Errorf("%.2f resources (%.0f bytes) per receiving proxy per edit, want at least 1", res.resources, res.bytes)
	}
	if res.stray != 0 {
		t.Errorf("%d responses went to proxies outside the edited namespace", res.stray)
	}
	if res.pushesPerEdit < 1 {
		t.Errorf("%.2f controller pushes per edit, want at least 1", res.pushesPerEdit)
	}
	if res.cpuPerEdit < 0 || res.rssMean <= 0 || res.rssPeak < res.rssMax {
		t.Errorf("CPU per edit %v, RSS mean %.1f, max %.1f, peak %.1f MB", res.cpuPerEdit, res.rssMean, res.rssMax, res.rssPeak)
	}
	b := res.burst
	if b == nil || b.pushes < 1 || b.pushes > o.burst || b.responsesMax < 1 {
		t.Errorf("burst: %+v, want between 1 and %d pushes and responses", b, o.burst)
	}
	// Two proxies in ns-0 and one in ns-1: one can leave.
	if m := res.memory; m == nil || m.left != 1 || m.all == 0 || m.kept == 0 {
		t.Errorf("memory per proxy: %+v, want it measured with 1 proxy leaving", m)
	}
	if _, err := os.Stat(o.dir + "/controller.log"); err != nil {
		t.Errorf("no controller log: %v", err)
	}
}
