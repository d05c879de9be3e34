package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

func TestGeoMean(t *testing.T) {
	gm, lo, hi := geoMean([]float64{1, 4, 1, 4, 1, 4})
	if math.Abs(gm-2) > 1e-9 {
		t.Fatalf("geometric mean = %v, want 2", gm)
	}
	if !(lo < gm && gm < hi) {
		t.Fatalf("interval %v-%v does not hold the mean %v", lo, hi, gm)
	}
	if gm, lo, hi := geoMean([]float64{1.5, 1.5, 1.5, 1.5, 1.5}); math.Abs(gm-1.5) > 1e-9 || hi-lo > 1e-9 {
		t.Fatalf("equal ratios: %v (%v-%v), want no spread", gm, lo, hi)
	}
}

func TestRatiosComparesRoundByRound(t *testing.T) {
	runs := []map[string]row{{"GET": {rps: 200}}, {"GET": {rps: 90}}, {"GET": {rps: 110}}}
	base := []map[string]row{{"GET": {rps: 100}}, {"GET": {rps: 100}}, {"GET": {rps: 100}}}
	if got, want := ratios(runs, base, "GET"), "1.10 (0.90-2.00)"; got != want {
		t.Fatalf("ratios = %q, want %q", got, want)
	}
}

func TestCPUTimeReadsProc(t *testing.T) {
	start := time.Now()
	for time.Since(start) < 30*time.Millisecond { // use a few clock ticks of CPU
	}
	d, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 {
		t.Fatalf("cpuTime = %v for a process that has run", d)
	}
}

func TestIdleTimeReadsProcStat(t *testing.T) {
	stat := []byte("cpu  1360267 0 1239137 3194031 20648 0 415341 6548 0 0\ncpu0 680000 0 600000 1597000 10000 0 200000 3000 0 0\n")
	got, err := parseIdle(stat)
	if want := (3194031 + 20648) * 10 * time.Millisecond; err != nil || got != want {
		t.Fatalf("parseIdle = %v, %v; want idle plus iowait, %v", got, err, want)
	}
	if _, err := parseIdle([]byte("intr 1 2 3\n")); err == nil {
		t.Fatal("parseIdle accepted a file without the cpu line first")
	}
	if d, err := idleTime(); err != nil || d <= 0 {
		t.Fatalf("idleTime on this machine = %v, %v", d, err)
	}
}

func TestCostRowSumsTheMachine(t *testing.T) {
	redis, proxy := &proc{name: "redis"}, &proc{name: "proxy"}
	r := map[string]row{costPath: {rps: 9}, costRedis: {rps: 3}, costClient: {rps: 11}, costIdle: {rps: 1}}
	if got, want := costRow(proxy, redis, 1, r), "| proxy | 1 | 9.00 | 3.00 | 11.00 | 1.00 | 24.00 |"; got != want {
		t.Fatalf("proxied row = %q, want %q", got, want)
	}
	// Direct, the path's process is redis-server: counted once.
	if got, want := costRow(redis, redis, 1, r), "| redis | 1 | - | 3.00 | 11.00 | 1.00 | 15.00 |"; got != want {
		t.Fatalf("direct row = %q, want %q", got, want)
	}
}

func TestPinMovesEveryThread(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	allowed := func() string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
				return strings.TrimSpace(v)
			}
		}
		t.Fatal("no Cpus_allowed_list in /proc/<pid>/status")
		return ""
	}
	all := allowed()
	if err := pin(cmd.Process.Pid, 0); err != nil {
		t.Fatal(err)
	}
	if got := allowed(); got != "0" {
		t.Fatalf("after pin to CPU 0: Cpus_allowed_list %q", got)
	}
	if err := pin(cmd.Process.Pid, allCPUs()...); err != nil {
		t.Fatal(err)
	}
	if got := allowed(); got != all {
		t.Fatalf("after pin to all CPUs: %q, want %q as before", got, all)
	}
}

func TestPlacementRow(t *testing.T) {
	redis, twem := &proc{name: "redis"}, &proc{name: "twemproxy"}
	run := func(get, set, path, rs float64) map[string]row {
		return map[string]row{"GET": {rps: get}, "SET": {rps: set}, costPath: {rps: path}, costRedis: {rps: rs}}
	}
	tw := []map[string]row{run(100, 100, 9, 1)}
	pl := placements[0]
	if got, want := placementRow(pl, twem, redis, tw, tw), "| client alone | twemproxy | 100 | 100 | 9.00 | 1.00 | 1.00 (1.00-1.00) | 1.00 (1.00-1.00) |"; got != want {
		t.Fatalf("proxied row = %q, want %q", got, want)
	}
	direct := []map[string]row{run(120, 90, 1, 1)}
	if got, want := placementRow(pl, redis, redis, direct, tw), "| client alone | redis | 120 | 90 | - | 1.00 | 1.20 (1.20-1.20) | 0.90 (0.90-0.90) |"; got != want {
		t.Fatalf("direct row = %q, want %q", got, want)
	}
}

// TestOrderIsBalanced: over a whole square every path runs once per row,
// in every position equally often, and right after every other path
// equally often.
func TestOrderIsBalanced(t *testing.T) {
	for k := 1; k <= 7; k++ {
		rows := order(k)
		after := map[[2]int]int{}
		at := map[[2]int]int{}
		for _, row := range rows {
			seen := map[int]bool{}
			for j, v := range row {
				seen[v] = true
				at[[2]int{v, j}]++
				if j > 0 {
					after[[2]int{row[j-1], v}]++
				}
			}
			if len(seen) != k {
				t.Fatalf("k=%d: row %v does not run every path once", k, row)
			}
		}
		for a := range k {
			for b := range k {
				if want := len(rows) / k; at[[2]int{a, b}] != want {
					t.Fatalf("k=%d: path %d runs in position %d %d times, want %d", k, a, b, at[[2]int{a, b}], want)
				}
				if a == b {
					continue
				}
				if want := len(rows) / k; after[[2]int{a, b}] != want {
					t.Fatalf("k=%d: path %d follows %d %d times, want %d: %v", k, b, a, after[[2]int{a, b}], want, rows)
				}
			}
		}
	}
}

// startRosettas starts one path per build with -all-cpus=false and two
// without, named for their threads.
func TestStartRosettasOnOneThreadOrEveryCPU(t *testing.T) {
	bin := testutil.GoBuild(t, filepath.Join("..", ".."), "./cmd/rosetta-proxy")
	for _, c := range []struct {
		allCPUs bool
		want    []string
	}{
		{false, []string{"x, 1 thread"}},
		{true, []string{"x, 1 thread", fmt.Sprintf("x, %d threads", runtime.NumCPU())}},
	} {
		ps, err := startRosettas("x", bin, t.TempDir(), "127.0.0.1:1", c.allCPUs)
		var names []string
		for _, p := range ps {
			names = append(names, p.name)
			p.stop()
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(names, "|") != strings.Join(c.want, "|") {
			t.Errorf("allCPUs %v: paths %q, want %q", c.allCPUs, names, c.want)
		}
	}
}
