package testutil

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestEventuallyWaitsForTheCondition(t *testing.T) {
	var n atomic.Int32
	Eventually(t, 5*time.Second, "three checks", func() bool { return n.Add(1) >= 3 })
	if n.Load() != 3 {
		t.Fatalf("cond ran %d times, want 3", n.Load())
	}
}

// recorder is a testing.TB whose Fatalf ends only the goroutine, so the
// test can look at what it said.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(r)
}
func (r *recorder) Fatal(args ...any) {
	r.msg = fmt.Sprint(args...)
	panic(r)
}

// fails runs f, which is to fail r, and returns what r was told.
func (r *recorder) fails(t *testing.T, f func()) string {
	t.Helper()
	func() {
		defer func() {
			if p := recover(); p != r {
				panic(p)
			}
		}()
		f()
		t.Fatal("did not fail")
	}()
	return r.msg
}

func TestEventuallyFailsAtTheDeadline(t *testing.T) {
	r := &recorder{TB: t}
	r.fails(t, func() { Eventually(r, 20*time.Millisecond, "never", func() bool { return false }) })
	if !strings.Contains(r.msg, "timed out") {
		t.Fatalf("Eventually past its deadline said %q, want a timeout", r.msg)
	}
}

func TestTCPPairConnectsBothEnds(t *testing.T) {
	a, b := TCPPair(t)
	if _, err := a.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 1)
	if _, err := b.Read(got); err != nil || got[0] != 'x' {
		t.Fatalf("read %q, %v; want the byte written at the other end", got, err)
	}
}
