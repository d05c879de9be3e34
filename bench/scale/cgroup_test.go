package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// needCgroup ends the test when this machine cannot make a memory cgroup
// (not root, or no memory controller).
func needCgroup(t *testing.T) {
	t.Helper()
	cg, err := newMemCgroup(64 << 20)
	if err != nil {
		testutil.Unavailable(t, "a writable memory cgroup", err)
	}
	if err := cg.remove(); err != nil {
		t.Fatal(err)
	}
}

// TestControllerRunsInItsMemoryCgroup runs the harness with -memory-max:
// the controller reads its soft limit from the cgroup, the cgroup's peak
// and OOM kills are reported, and the cgroup is gone afterwards.
func TestControllerRunsInItsMemoryCgroup(t *testing.T) {
	needCgroup(t)
	o := options{services: 20, proxies: 2, namespaces: 2, xdsMode: "delta", edits: 2, gap: 50 * time.Millisecond,
		timeout: 2 * time.Minute, dir: t.TempDir(), keep: true, memoryMax: 200 << 20}
	res, err := run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	res.print(&out)
	if res.cgroupPeak <= 0 || res.oomKills != 0 || !strings.Contains(out.String(), "memory limit 200 MiB") {
		t.Errorf("cgroup peak %.1f MB, %d OOM kills; report:\n%s", res.cgroupPeak, res.oomKills, out.String())
	}
	log, err := os.ReadFile(o.dir + "/controller.log")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), `msg="soft memory limit" limit=180Mi source=container container_limit=200Mi`) {
		t.Errorf("the controller did not take 90%% of its cgroup's limit:\n%s", log)
	}
	assertNoBenchCgroup(t)
}

// TestControllerKilledAtItsLimitSaysSo gives the controller far less
// memory than a mesh of 2,000 services needs: the run fails at once,
// saying the kernel killed it.
func TestControllerKilledAtItsLimitSaysSo(t *testing.T) {
	needCgroup(t)
	o := options{services: 2000, proxies: 2, namespaces: 2, xdsMode: "delta", edits: 1, timeout: 2 * time.Minute, memoryMax: 12 << 20}
	_, err := run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "killed for want of memory (OOM)") {
		t.Fatalf("run: %v; want it to say the controller was killed for want of memory", err)
	}
	assertNoBenchCgroup(t)
}

func assertNoBenchCgroup(t *testing.T) {
	t.Helper()
	cg, err := newMemCgroup(64 << 20) // the same name: this process's
	if err != nil {
		t.Fatalf("the run's cgroup is still there: %v", err)
	}
	if err := cg.remove(); err != nil {
		t.Fatal(err)
	}
}
