package netloop

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// fedConn is a Feedable that records the feed it was given.
type fedConn struct {
	net.Conn
	f      *Feed
	refuse bool
}

func (c *fedConn) Feed(f *Feed) bool {
	if c.refuse {
		return false
	}
	c.f = f
	return true
}

// recorder echoes every line it gets, held in the round, and records how
// reading ended.
type recorder struct {
	w       *wire.Writer
	mu      sync.Mutex
	frames  []string
	ended   chan error
	stopped chan struct{}
	keep    bool // an idle timeout keeps reading
}

func newRecorder(w *wire.Writer) *recorder {
	return &recorder{w: w, ended: make(chan error, 1), stopped: make(chan struct{})}
}

func (r *recorder) Frame(frame []byte, err error, round *Round) bool {
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && r.keep {
			return true
		}
		r.ended <- err
		return false
	}
	r.mu.Lock()
	r.frames = append(r.frames, string(frame))
	r.mu.Unlock()
	r.w.Lock()
	r.w.AppendLocked(frame)
	round.Hold(r.w)
	r.w.Unlock()
	return true
}

func (r *recorder) Stopped() { close(r.stopped) }

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.frames...)
}

// fedRig is a fed connection whose answers go to a pipe read by out.
type fedRig struct {
	conn *fedConn
	rec  *recorder
	out  chan string
}

func newFedRig(t *testing.T, lim Limits) *fedRig {
	here, there := net.Pipe()
	t.Cleanup(func() { here.Close(); there.Close() })
	w := wire.NewWriter(here, wire.Options{Timeout: 5 * time.Second, Max: 1 << 20})
	r := &fedRig{conn: &fedConn{Conn: here}, rec: newRecorder(w), out: make(chan string, 100)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := there.Read(buf)
			if err != nil {
				close(r.out)
				return
			}
			r.out <- string(buf[:n])
		}
	}()
	if !Serve(r.conn, testutil.Lines{}, w, r.rec, lim) || r.conn.f == nil {
		t.Fatal("Serve did not feed a Feedable connection")
	}
	return r
}

// Lines pushed in pieces reach the handler whole, in order, on the pushing
// goroutine, and what the handler writes waits for the round's Flush.
func TestFeedSplitsPushedBytesIntoFrames(t *testing.T) {
	r := newFedRig(t, Limits{})
	var round Round
	for _, piece := range []string{"he", "llo\nwor", "ld\n", "a\nb\nc"} {
		if !r.conn.f.Push(&round, []byte(piece)) {
			t.Fatal("Push stopped reading")
		}
	}
	if got := strings.Join(r.rec.got(), ""); got != "hello\nworld\na\nb\n" {
		t.Fatalf("frames = %q", got)
	}
	select {
	case s := <-r.out:
		t.Fatalf("%q was written before the round was flushed", s)
	case <-time.After(50 * time.Millisecond):
	}
	round.Flush()
	var all strings.Builder
	deadline := time.After(5 * time.Second)
	for all.Len() < len("hello\nworld\na\nb\n") {
		select {
		case s := <-r.out:
			all.WriteString(s)
		case <-deadline:
			t.Fatalf("answers after Flush: %q", all.String())
		}
	}
	if all.String() != "hello\nworld\na\nb\n" {
		t.Fatalf("answers = %q", all.String())
	}
}

// A push that a frame's bytes do not fit within the connection's buffer
// limit ends reading with the limit's error and stops the feed.
func TestFeedHoldsAtMostTheBufferLimit(t *testing.T) {
	r := newFedRig(t, Limits{Buffer: wire.Limits{PerConn: 64 << 10}})
	var round Round
	alive := r.conn.f.Push(&round, bytes.Repeat([]byte("x"), 100<<10))
	if alive {
		t.Fatal("a 100 KiB line was held under a 64 KiB limit")
	}
	if err := <-r.rec.ended; LimitReason(err) != ReasonBuffer {
		t.Fatalf("reading ended with %v, not the buffer limit", err)
	}
	<-r.rec.stopped
	if r.conn.f.Push(&round, []byte("late\n")) {
		t.Fatal("a stopped feed took more input")
	}
}

// A frame begun and not finished within Limits.Frame ends reading.
func TestFeedFrameTimeout(t *testing.T) {
	r := newFedRig(t, Limits{Frame: 50 * time.Millisecond})
	var round Round
	r.conn.f.Push(&round, []byte("half a li"))
	select {
	case err := <-r.rec.ended:
		if LimitReason(err) != ReasonFrame {
			t.Fatalf("reading ended with %v, not the frame timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a frame left unfinished never timed out")
	}
	<-r.rec.stopped
}

// The handler learns of an idle connection and may keep it.
func TestFeedIdleTimeout(t *testing.T) {
	r := newFedRig(t, Limits{Idle: 50 * time.Millisecond})
	select {
	case err := <-r.rec.ended:
		if LimitReason(err) != ReasonIdle {
			t.Fatalf("reading ended with %v, not the idle timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an idle connection was never reported")
	}
	<-r.rec.stopped
}

// The end of input with a frame cut short is io.ErrUnexpectedEOF; a
// connection whose writer closes stops.
func TestFeedEndAndClose(t *testing.T) {
	r := newFedRig(t, Limits{})
	var round Round
	r.conn.f.Push(&round, []byte("cut"))
	r.conn.f.End(&round, io.EOF)
	if err := <-r.rec.ended; err != io.ErrUnexpectedEOF {
		t.Fatalf("end with a frame cut short = %v", err)
	}
	<-r.rec.stopped

	r = newFedRig(t, Limits{})
	r.rec.w.Close()
	select {
	case <-r.rec.stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("closing the writer did not stop the feed")
	}
	if err := <-r.rec.ended; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("reading ended with %v after the writer closed", err)
	}
}

// A connection that refuses a feed is left to a goroutine of its own.
func TestFeedRefused(t *testing.T) {
	here, there := net.Pipe()
	defer here.Close()
	defer there.Close()
	w := wire.NewWriter(here, wire.Options{Timeout: time.Second, Max: 1 << 20})
	fc := &fedConn{Conn: here, refuse: true}
	if feed(fc, testutil.Lines{}, w, newRecorder(w), Limits{Idle: time.Second}) {
		t.Fatal("feed took a connection that refused it")
	}
}
