package controller

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type pushRecord struct {
	at, since time.Time
}

func runPipeline(t *testing.T, min, max time.Duration) (*Pipeline, chan pushRecord) {
	t.Helper()
	pushes := make(chan pushRecord, 100)
	p := &Pipeline{
		Inputs:   func() (*Inputs, error) { return &Inputs{}, nil },
		Push:     func(_ *Index, since time.Time) { pushes <- pushRecord{time.Now(), since} },
		MinDelay: min, MaxDelay: max,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return p, pushes
}

// TestDebounceCoalesces: a burst of changes makes one push, MinDelay after
// the last change, reporting the first change's time.
func TestDebounceCoalesces(t *testing.T) {
	p, pushes := runPipeline(t, 50*time.Millisecond, time.Second)
	first := time.Now()
	var last time.Time
	for i := 0; i < 5; i++ {
		last = time.Now()
		p.Changed()
		time.Sleep(10 * time.Millisecond) // the burst itself, not a wait for readiness
	}
	select {
	case r := <-pushes:
		// A push comes no sooner than MinDelay after the last change (timers
		// never fire early; a loaded machine only makes it later).
		if r.at.Sub(last) < 50*time.Millisecond {
			t.Errorf("pushed %v after the last change, want at least the 50ms quiet time", r.at.Sub(last))
		}
		if r.since.Before(first) || r.since.After(first.Add(50*time.Millisecond)) {
			t.Errorf("since = %v, want the first change (%v)", r.since, first)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no push")
	}
	select {
	case r := <-pushes:
		t.Fatalf("a second push for one burst at %v", r.at)
	case <-time.After(150 * time.Millisecond):
	}
}

// TestDebounceMaxDelay: changes that never stop still push every MaxDelay.
func TestDebounceMaxDelay(t *testing.T) {
	p, pushes := runPipeline(t, 40*time.Millisecond, 150*time.Millisecond)
	start := time.Now()
	stop := time.After(1500 * time.Millisecond)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	n := 0
loop:
	for {
		select {
		case <-tick.C:
			p.Changed()
		case r := <-pushes:
			n++
			// MaxDelay is 150ms; the bound leaves room for a loaded machine
			// and still fails a debounce that waits for the changes to stop.
			if d := r.at.Sub(r.since); d > time.Second {
				t.Errorf("push %d came %v after its first change, want about 150ms", n, d)
			}
		case <-stop:
			break loop
		}
	}
	if n < 2 {
		t.Fatalf("%d pushes in %v of constant change, want at least 2", n, time.Since(start))
	}
}

// TestWarningsLoggedOnce: a warning is logged when it appears, not again
// while it stands, and again when it comes back.
func TestWarningsLoggedOnce(t *testing.T) {
	var buf strings.Builder
	p := &Pipeline{Log: slog.New(slog.NewTextHandler(&buf, nil))}
	for _, ws := range [][]string{{"a", "b"}, {"a", "b"}, {"b"}, {"a", "b"}} {
		p.logWarnings(ws)
	}
	if got := strings.Count(buf.String(), "warning=a"); got != 2 {
		t.Errorf("a logged %d times, want 2:\n%s", got, buf.String())
	}
	if got := strings.Count(buf.String(), "warning=b"); got != 1 {
		t.Errorf("b logged %d times, want 1:\n%s", got, buf.String())
	}
}
