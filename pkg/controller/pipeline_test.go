package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// rig runs a Pipeline on a fake clock and records its pushes.
type rig struct {
	p      *Pipeline
	clk    *fakeClock
	pushes chan pushRecord
	// ended receives once a push has ended and the pipeline noted it.
	ended chan struct{}
	// release, when not nil, holds every push until the test sends on
	// it, so that changes can come while a push runs.
	release chan struct{}
}

func newRig(t *testing.T, min, max time.Duration, held bool) *rig {
	t.Helper()
	r := &rig{clk: newFakeClock(), pushes: make(chan pushRecord, 100), ended: make(chan struct{}, 100)}
	if held {
		r.release = make(chan struct{})
	}
	var reads atomic.Int64
	r.p = &Pipeline{
		// Every read differs, as a change was signalled before it: a read
		// that finds nothing changed pushes nothing (TestNoChangeNoPush).
		Inputs: func() (*Inputs, error) {
			name := fmt.Sprintf("ns%d", reads.Add(1))
			return &Inputs{Namespaces: []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: name}}}}, nil
		},
		Push: func(_ *Index, since time.Time) {
			r.pushes <- pushRecord{r.clk.Now(), since}
			if r.release != nil {
				<-r.release
			}
		},
		MinDelay: min, MaxDelay: max,
		DNSRefresh: -1, // no ticker on the real clock
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		clock:      r.clk,
		afterPush:  func() { r.ended <- struct{}{} },
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.p.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return r
}

// started returns the push the pipeline has started (at once, or after a
// fired timer); the deadline only bounds a broken pipeline.
func (r *rig) started(t *testing.T) pushRecord {
	t.Helper()
	select {
	case rec := <-r.pushes:
		return rec
	case <-time.After(5 * time.Second):
		t.Fatal("no push")
		return pushRecord{}
	}
}

// end lets a held push finish and waits until the pipeline has noted its
// end, so that the test can move time on.
func (r *rig) end(t *testing.T) {
	t.Helper()
	if r.release != nil {
		r.release <- struct{}{}
	}
	select {
	case <-r.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the push did not end")
	}
}

// push returns the next push once it has ended.
func (r *rig) push(t *testing.T) pushRecord {
	t.Helper()
	rec := r.started(t)
	r.end(t)
	return rec
}

// idle checks that the pipeline has no timer set and made no push.
func (r *rig) idle(t *testing.T) {
	t.Helper()
	if n := r.clk.pending(); n != 0 {
		t.Fatalf("%d timers set, want none", n)
	}
	if len(r.clk.set) != 0 || len(r.pushes) != 0 {
		t.Fatalf("%d timers set and %d pushes, want none", len(r.clk.set), len(r.pushes))
	}
}

// TestDebounceQuietPushesAtOnce: a change after MinDelay without a push
// is pushed at once, with no timer; one within MinDelay of a push waits
// for MinDelay of quiet.
func TestDebounceQuietPushesAtOnce(t *testing.T) {
	const min = 100 * time.Millisecond
	r := newRig(t, min, time.Second, false)
	for i := 0; i < 2; i++ {
		if i > 0 {
			r.clk.step(min) // quiet again
		}
		at := r.clk.Now()
		r.p.Changed()
		if rec := r.push(t); !rec.at.Equal(at) || !rec.since.Equal(at) {
			t.Fatalf("change %d at %v pushed at %v (since %v), want at once", i, at, rec.at, rec.since)
		}
		r.idle(t)
	}

	// Within MinDelay of the last push: a burst, held for MinDelay.
	r.clk.step(min - time.Millisecond)
	at := r.clk.Now()
	r.p.Changed()
	if d := r.clk.timerSet(t); d != min {
		t.Fatalf("a change %v after a push set a %v timer, want MinDelay %v", min-time.Millisecond, d, min)
	}
	if r.clk.step(min - time.Millisecond) {
		t.Fatal("a change soon after a push went out before MinDelay of quiet")
	}
	r.clk.step(time.Millisecond)
	if rec := r.push(t); rec.at.Sub(at) != min || !rec.since.Equal(at) {
		t.Fatalf("pushed %v after the change (since %v), want %v (since %v)", rec.at.Sub(at), rec.since, min, at)
	}
	r.idle(t)
}

// TestDebounceUnsettled: a change that may be incomplete (a file written
// in place) waits for MinDelay of quiet even after a quiet period.
func TestDebounceUnsettled(t *testing.T) {
	const min = 100 * time.Millisecond
	r := newRig(t, min, time.Second, false)
	at := r.clk.Now()
	r.p.changedUnsettled()
	if d := r.clk.timerSet(t); d != min {
		t.Fatalf("an unsettled change set a %v timer, want MinDelay %v", d, min)
	}
	r.clk.step(min)
	if rec := r.push(t); rec.at.Sub(at) != min {
		t.Fatalf("an unsettled change pushed after %v, want %v", rec.at.Sub(at), min)
	}
	r.idle(t)
}

// TestDebounceCoalesces: changes 10 ms apart right after a push make one
// push, exactly MinDelay after the last of them, reporting the first
// one's time; a change after a quiet period pushes alone at once.
func TestDebounceCoalesces(t *testing.T) {
	const min = 50 * time.Millisecond
	r := newRig(t, min, time.Second, false)
	r.p.Changed()
	r.push(t) // the first change: at once
	var first time.Time
	for i := 0; i < 5; i++ {
		if r.clk.step(10 * time.Millisecond) {
			t.Fatalf("a timer fired %d ms into a burst with changes 10 ms apart", (i+1)*10)
		}
		if i == 0 {
			first = r.clk.Now()
		}
		r.p.Changed()
		if d := r.clk.timerSet(t); d != min {
			t.Fatalf("change %d set a %v timer, want MinDelay %v", i, d, min)
		}
	}
	last := r.clk.Now()
	if r.clk.step(min - time.Millisecond) {
		t.Fatal("pushed before MinDelay of quiet")
	}
	if !r.clk.step(time.Millisecond) {
		t.Fatal("no push MinDelay after the last change")
	}
	rec := r.push(t)
	if rec.at.Sub(last) != min || !rec.since.Equal(first) {
		t.Fatalf("push at last change +%v since %v, want +%v since %v (the burst's first change)", rec.at.Sub(last), rec.since, min, first)
	}
	r.idle(t)

	// The burst is spent: a later change pushes at once, with its own time.
	r.clk.step(time.Hour)
	again := r.clk.Now()
	r.p.Changed()
	if rec := r.push(t); !rec.since.Equal(again) || !rec.at.Equal(again) {
		t.Fatalf("the next change pushed at %v since %v, want at once at %v", rec.at, rec.since, again)
	}
	r.idle(t)
}

// TestDebounceMaxDelay: changes that never stop still push MaxDelay after
// the first of each burst.
func TestDebounceMaxDelay(t *testing.T) {
	const min, max, every = 40 * time.Millisecond, 150 * time.Millisecond, 10 * time.Millisecond
	r := newRig(t, min, max, false)
	r.p.Changed()
	r.push(t)
	for round := 0; round < 3; round++ {
		r.clk.step(every)
		first := r.clk.Now()
		r.p.Changed()
		r.clk.timerSet(t)
		for !r.clk.step(every) {
			if r.clk.Now().Sub(first) > max {
				t.Fatalf("round %d: no push %v after the first change, want one at MaxDelay %v", round, r.clk.Now().Sub(first), max)
			}
			r.p.Changed()
			r.clk.timerSet(t)
		}
		rec := r.push(t)
		if !rec.since.Equal(first) || rec.at.Sub(first) != max {
			t.Fatalf("round %d: pushed %v after a first change at %v, want %v after %v", round, rec.at.Sub(rec.since), rec.since, max, first)
		}
	}
}

// TestDebounceBurst: 1,000 changes in a row make a few pushes. The first
// goes out at once; each push takes cost of (fake) time while changes go
// on arriving gap apart; what comes during and after a push waits for
// MinDelay of quiet, or MaxDelay.
func TestDebounceBurst(t *testing.T) {
	const min, max, n = 100 * time.Millisecond, time.Second, 1000
	for _, tc := range []struct {
		name      string
		gap, cost time.Duration
		most      int
	}{
		{"all while the first push runs", 0, 50 * time.Millisecond, 2},
		{"100 ms of changes", 100 * time.Microsecond, 50 * time.Millisecond, 2},
		{"1 s of changes", time.Millisecond, 50 * time.Millisecond, 2},
		{"5 s of changes, slow pushes", 5 * time.Millisecond, 200 * time.Millisecond, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, min, max, true)
			var pushes []pushRecord
			var changes []time.Time
			holding, heldChange := false, false
			var holdUntil time.Time
			start := func() {
				pushes = append(pushes, r.started(t))
				holding, holdUntil = true, r.clk.Now().Add(tc.cost)
			}
			finish := func() {
				r.end(t)
				holding = false
				if heldChange {
					r.clk.timerSet(t) // the changes that came meanwhile wait
					heldChange = false
				}
			}
			for i := 0; i < n; i++ {
				if i > 0 && r.clk.step(tc.gap) {
					start()
				}
				if holding && !r.clk.Now().Before(holdUntil) {
					finish()
				}
				r.p.Changed()
				changes = append(changes, r.clk.Now())
				switch {
				case i == 0:
					start() // after quiet: at once
				case holding:
					heldChange = true
				default:
					r.clk.timerSet(t)
				}
			}
			if holding {
				finish()
			}
			for !r.clk.step(time.Millisecond) {
				if r.clk.Now().Sub(changes[n-1]) > max {
					t.Fatal("the last changes were never pushed")
				}
			}
			pushes = append(pushes, r.started(t))
			r.end(t)
			r.idle(t)

			last := pushes[len(pushes)-1]
			t.Logf("%d changes %v apart, pushes taking %v: %d pushes", n, tc.gap, tc.cost, len(pushes))
			switch {
			case !pushes[0].at.Equal(changes[0]):
				t.Errorf("the first change pushed %v after it, want at once", pushes[0].at.Sub(changes[0]))
			case len(pushes) > tc.most:
				t.Errorf("%d pushes, want at most %d", len(pushes), tc.most)
			case last.at.Sub(changes[n-1]) > min:
				t.Errorf("the last change pushed %v after it, want at most MinDelay %v", last.at.Sub(changes[n-1]), min)
			}
		})
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
