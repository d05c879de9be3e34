package main

import (
	"math"
	"os"
	"testing"
	"time"
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
