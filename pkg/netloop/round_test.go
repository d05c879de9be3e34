package netloop

import (
	"testing"
	"time"
)

// TestStampIsTheRoundsTimeUntilFlush: a stamped round answers Now with the
// stamp, not the clock, until it is flushed.
func TestStampIsTheRoundsTimeUntilFlush(t *testing.T) {
	var r Round
	r.Stamp()
	stamp := r.Now()
	time.Sleep(2 * time.Millisecond)
	if got := r.Now(); !got.Equal(stamp) {
		t.Fatalf("Now after Stamp = %v, want the stamp %v", got, stamp)
	}
	r.Flush()
	if got := r.Now(); !got.After(stamp) {
		t.Fatalf("Now after Flush = %v, want the clock, past the stamp %v", got, stamp)
	}
}
