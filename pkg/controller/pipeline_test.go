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

// fakeClock is a debounce clock that moves only when the test steps it,
// and reports each timer the pipeline sets, so a test waits on the
// pipeline's own actions instead of sleeping.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	set    chan time.Duration // the length of each timer set
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), set: make(chan time.Duration, 100)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	ft := &fakeTimer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	c.timers = append(c.timers, ft)
	c.mu.Unlock()
	c.set <- d
	return ft.c, func() bool { return c.remove(ft) }
}

func (c *fakeClock) remove(ft *fakeTimer) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, t := range c.timers {
		if t == ft {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// step moves time by d and fires the timers due; it reports whether any
// fired.
func (c *fakeClock) step(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	fired := false
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
			continue
		}
		t.c <- c.now
		fired = true
	}
	c.timers = kept
	return fired
}

// pending is the number of timers set and neither fired nor stopped.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// timerSet waits for the pipeline to set its next timer and returns its
// length; the deadline only bounds a broken pipeline.
func (c *fakeClock) timerSet(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-c.set:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("the pipeline set no timer")
		return 0
	}
}

func runPipeline(t *testing.T, min, max time.Duration) (*Pipeline, *fakeClock, chan pushRecord) {
	t.Helper()
	clk := newFakeClock()
	pushes := make(chan pushRecord, 100)
	p := &Pipeline{
		Inputs:   func() (*Inputs, error) { return &Inputs{}, nil },
		Push:     func(_ *Index, since time.Time) { pushes <- pushRecord{clk.Now(), since} },
		MinDelay: min, MaxDelay: max,
		DNSRefresh: -1, // no ticker on the real clock
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		clock:      clk,
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return p, clk, pushes
}

// nextPush returns the push that a fired timer makes.
func nextPush(t *testing.T, pushes chan pushRecord) pushRecord {
	t.Helper()
	select {
	case r := <-pushes:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("a timer fired but nothing was pushed")
		return pushRecord{}
	}
}

// TestDebounceCoalesces: a burst of changes makes one push, exactly
// MinDelay after the last change, reporting the first change's time; the
// next change makes a push of its own.
func TestDebounceCoalesces(t *testing.T) {
	const min = 50 * time.Millisecond
	p, clk, pushes := runPipeline(t, min, time.Second)
	first := clk.Now()
	for i := 0; i < 5; i++ {
		if i > 0 && clk.step(10*time.Millisecond) {
			t.Fatalf("a timer fired %d ms into a burst with changes 10 ms apart", i*10)
		}
		p.Changed()
		if d := clk.timerSet(t); d != min {
			t.Fatalf("change %d set a %v timer, want MinDelay %v", i, d, min)
		}
	}
	last := clk.Now()
	if clk.step(min - time.Millisecond) {
		t.Fatal("pushed before MinDelay of quiet")
	}
	if !clk.step(time.Millisecond) {
		t.Fatal("no push MinDelay after the last change")
	}
	r := nextPush(t, pushes)
	if r.at.Sub(last) != min || !r.since.Equal(first) {
		t.Fatalf("push at last change +%v since %v, want +%v since %v (the first change)", r.at.Sub(last), r.since, min, first)
	}
	if n := clk.pending(); n != 0 {
		t.Fatalf("%d timers left after the push, want none until the next change", n)
	}

	// The burst is spent: a later change pushes with its own time.
	clk.step(time.Hour)
	again := clk.Now()
	p.Changed()
	clk.timerSet(t)
	clk.step(min)
	if r := nextPush(t, pushes); !r.since.Equal(again) {
		t.Fatalf("the next push reports a change at %v, want %v", r.since, again)
	}
	if len(pushes) != 0 {
		t.Fatalf("%d more pushes, want one per burst", len(pushes))
	}
}

// TestDebounceMaxDelay: changes that never stop still push MaxDelay after
// the first of them.
func TestDebounceMaxDelay(t *testing.T) {
	const min, max, every = 40 * time.Millisecond, 150 * time.Millisecond, 10 * time.Millisecond
	p, clk, pushes := runPipeline(t, min, max)
	for round := 0; round < 3; round++ {
		first := clk.Now()
		p.Changed()
		clk.timerSet(t)
		for !clk.step(every) {
			if clk.Now().Sub(first) > max {
				t.Fatalf("round %d: no push %v after the first change, want one at MaxDelay %v", round, clk.Now().Sub(first), max)
			}
			p.Changed()
			clk.timerSet(t)
		}
		r := nextPush(t, pushes)
		if !r.since.Equal(first) || r.at.Sub(first) != max {
			t.Fatalf("round %d: pushed %v after a first change at %v, want %v after %v", round, r.at.Sub(r.since), r.since, max, first)
		}
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
