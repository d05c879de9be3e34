package hbone

import (
	"testing"
	"time"
)

// expiresWithin reports how long d took to pass, failing past limit.
func expiresWithin(t *testing.T, d *deadline, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-d.done():
		return time.Since(start)
	case <-time.After(limit):
		t.Fatalf("the deadline did not pass within %v", limit)
		return 0
	}
}

// A deadline moved later passes at the later time although its timer was
// set for the earlier one; one moved sooner passes at the sooner time.
func TestDeadlineMoves(t *testing.T) {
	d := newDeadline()
	defer d.stop()
	start := time.Now()
	d.set(start.Add(50 * time.Millisecond))
	d.set(start.Add(300 * time.Millisecond))
	expiresWithin(t, d, 5*time.Second)
	if e := time.Since(start); e < 300*time.Millisecond {
		t.Errorf("a deadline moved to 300ms passed after %v", e)
	}

	start = time.Now()
	d.set(start.Add(time.Hour))
	d.set(start.Add(50 * time.Millisecond))
	if e := expiresWithin(t, d, 5*time.Second); e > time.Second {
		t.Errorf("a deadline moved to 50ms passed after %v", e)
	}

	// None, then one in the past.
	d.set(time.Time{})
	select {
	case <-d.done():
		t.Fatal("no deadline, and it passed")
	case <-time.After(100 * time.Millisecond):
	}
	d.set(time.Now().Add(-time.Second))
	expiresWithin(t, d, 100*time.Millisecond)
}
