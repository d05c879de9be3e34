package gcpace

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		name                string
		base                int
		live, rate, maxHeap uint64
		want                int
	}{
		{"slow allocation keeps base", 200, 4 * mb, 4 * mb, 32 * mb, 200},
		{"no live heap yet keeps base", 200, 0, 400 * mb, 32 * mb, 200},
		{"fast allocation spaces collections", 200, 4 * mb, 80 * mb, 32 * mb, 500},
		{"the cap bounds the goal", 200, 4 * mb, 800 * mb, 32 * mb, 700},
		{"a cap below base's goal keeps base", 200, 20 * mb, 800 * mb, 32 * mb, 200},
		{"a live heap above the cap keeps base", 200, 40 * mb, 800 * mb, 32 * mb, 200},
	} {
		if got := Percent(c.base, c.live, c.rate, c.maxHeap); got != c.want {
			t.Errorf("%s: Percent(%d, %d MB, %d MB/s, %d MB) = %d, want %d", c.name, c.base, c.live/mb, c.rate/mb, c.maxHeap/mb, got, c.want)
		}
	}
}

var sink []byte

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// waitGOGC waits up to 5 s for GOGC to satisfy ok. Meanwhile the test
// allocates as fast as it can (fast) or hardly at all: that allocation rate
// is what Run reads, so the pauses below are the quiet state under test,
// not a stand-in for readiness.
func waitGOGC(t *testing.T, fast bool, ok func(uint64) bool) {
	t.Helper()
	end := time.Now().Add(5 * time.Second)
	for time.Now().Before(end) {
		if ok(gogc()) {
			return
		}
		if fast {
			for range 1000 {
				sink = make([]byte, 1024)
			}
			runtime.Gosched() // let Run's ticker in
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Fatalf("GOGC stayed %d", gogc())
}

func TestRunRaisesGOGCWhileAllocationIsFastAndRestoresIt(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Run(ctx, 150, 256<<20)
		close(done)
	}()
	waitGOGC(t, true, func(g uint64) bool { return g > 150 })
	waitGOGC(t, false, func(g uint64) bool { return g == 150 })
	waitGOGC(t, true, func(g uint64) bool { return g > 150 })
	cancel()
	<-done
	if g := gogc(); g != 150 {
		t.Fatalf("after Run ended GOGC is %d, want the base 150", g)
	}
}
