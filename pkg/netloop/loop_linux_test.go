package netloop

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// bigAnswer is the answer to "big", made once: copying 8 MiB for every
// connection cost seconds under the race detector on a busy machine.
var bigAnswer = bytes.Repeat([]byte("x"), 8<<20)

// echo answers each line with the line, or with big bytes for "big"; it
// records how reading ended.
type echo struct {
	w       *wire.Writer
	big     []byte
	ended   chan error
	stopped atomic.Int32
	bigs    atomic.Int32 // "big" frames answered
	idle    func() bool  // what to answer an idle timeout
}

func (e *echo) Frame(frame []byte, err error, r *Round) bool {
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && e.idle != nil && e.idle() {
			return true
		}
		e.ended <- err
		return false
	}
	e.w.Lock()
	if string(frame) == "big\n" {
		e.w.AppendLocked(e.big)
		e.bigs.Add(1)
	} else {
		e.w.AppendLocked(frame)
	}
	r.Hold(e.w)
	e.w.Unlock()
	return true
}

func (e *echo) Stopped() { e.stopped.Add(1) }

type rig struct {
	t  *testing.T
	lp *loop
	ln net.Listener
}

func newRig(t *testing.T) *rig {
	lp, err := newLoop()
	if err != nil {
		t.Fatalf("newLoop: %v", err)
	}
	go lp.run()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &rig{t: t, lp: lp, ln: ln}
}

// accept connects a client to the rig's listener.
func (r *rig) accept() (client, server net.Conn) {
	client, err := net.Dial("tcp", r.ln.Addr().String())
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { client.Close() })
	server, err = r.ln.Accept()
	if err != nil {
		r.t.Fatal(err)
	}
	return client, server
}

// conn connects a client and serves the server side on the rig's loop.
func (r *rig) conn(idle time.Duration, onIdle func() bool) (net.Conn, *echo) {
	return r.connWith(Limits{Idle: idle}, onIdle)
}

// connWith is conn with any limits.
func (r *rig) connWith(lim Limits, onIdle func() bool) (net.Conn, *echo) {
	return r.connWriting(lim, onIdle, wire.Options{Timeout: 5 * time.Second, Max: 64 << 20})
}

// connWriting is connWith with the server side's writer options.
func (r *rig) connWriting(lim Limits, onIdle func() bool, wo wire.Options) (net.Conn, *echo) {
	client, server := r.accept()
	e := &echo{w: wire.NewWriter(server, wo), big: bigAnswer, ended: make(chan error, 1), idle: onIdle}
	if !r.lp.add(server, testutil.Lines{}, e.w, e, lim) {
		r.t.Fatal("the loop refused a TCP connection")
	}
	r.t.Cleanup(e.w.Close)
	return client, e
}

// roundTripWait bounds one echo: it only ends a test whose loop stopped
// answering, and under the race detector at a load of 20 on two cores a
// loop busy copying megabytes took more than 5 s to come round.
const roundTripWait = 2 * time.Minute

func roundTrip(t *testing.T, c net.Conn, rd *bufio.Reader, line string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(roundTripWait))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatal(err)
	}
	got, err := rd.ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo of %q = %q, %v", line, got, err)
	}
}

func TestLoopEchoesManyConnectionsAndPipelines(t *testing.T) {
	r := newRig(t)
	var wg sync.WaitGroup
	for i := range 20 {
		c, _ := r.conn(0, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// a pipeline of 200 lines in one write, answered in order
			var sb strings.Builder
			for j := range 200 {
				sb.WriteString(strings.Repeat("a", i+j%7) + "\n")
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, sb.String()); err != nil {
				t.Error(err)
				return
			}
			got := make([]byte, sb.Len())
			if _, err := io.ReadFull(c, got); err != nil || string(got) != sb.String() {
				t.Errorf("connection %d: pipeline echoed wrong (%v)", i, err)
			}
		}()
	}
	wg.Wait()
}

func TestSlowReaderDoesNotStallTheLoop(t *testing.T) {
	r := newRig(t)
	// The slow connection's writes wait for its reader without a time
	// limit: a loop that waited with them would never answer anyone again,
	// rather than only until a write timeout.
	slow, se := r.connWriting(Limits{}, nil, wire.Options{Max: 64 << 20})
	// Several answers of 8 MiB that the client never reads fill both socket
	// buffers; the loop must go on serving others meanwhile.
	for range 4 {
		if _, err := io.WriteString(slow, "big\n"); err != nil {
			t.Fatal(err)
		}
	}
	// Only once the loop has taken all four does the slow reader stand in
	// its way.
	testutil.Eventually(t, roundTripWait, "the loop to answer the slow reader's four requests", func() bool { return se.bigs.Load() == 4 })
	c, _ := r.conn(0, nil)
	rd := bufio.NewReader(c)
	for i := range 50 {
		roundTrip(t, c, rd, "ping"+strings.Repeat("!", i))
	}
}

func TestClosingTheWriterStopsReadingOnce(t *testing.T) {
	r := newRig(t)
	c, e := r.conn(0, nil)
	roundTrip(t, c, bufio.NewReader(c), "hello")
	e.w.Close() // as a write error or a drain would, from another goroutine
	testutil.Eventually(t, 5*time.Second, "Stopped", func() bool { return e.stopped.Load() > 0 })
	if n := e.stopped.Load(); n != 1 {
		t.Fatalf("Stopped ran %d times, want 1", n)
	}
	r.lp.mu.Lock()
	left := len(r.lp.conns)
	r.lp.mu.Unlock()
	if left != 0 {
		t.Fatalf("the loop still holds %d connections", left)
	}
}

func TestClientEOFEndsReading(t *testing.T) {
	r := newRig(t)
	c, e := r.conn(0, nil)
	roundTrip(t, c, bufio.NewReader(c), "hello")
	c.(*net.TCPConn).CloseWrite()
	e.endsWith(t, io.EOF)
}

// endsWith waits for the error that ended reading and checks it is want.
func (e *echo) endsWith(t *testing.T, want error) {
	t.Helper()
	select {
	case err := <-e.ended:
		if !errors.Is(err, want) {
			t.Fatalf("reading ended with %v, want %v", err, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("reading did not end with %v", want)
	}
}

func TestIdleTimeoutReachesTheHandler(t *testing.T) {
	r := newRig(t)
	var keep atomic.Bool
	var asked atomic.Int32
	keep.Store(true)
	c, e := r.conn(50*time.Millisecond, func() bool { asked.Add(1); return keep.Load() })
	rd := bufio.NewReader(c)
	// Idle past the timeout twice; the handler keeps the connection.
	testutil.Eventually(t, 5*time.Second, "the idle timeout to reach the handler twice", func() bool { return asked.Load() >= 2 })
	roundTrip(t, c, rd, "still here")
	keep.Store(false)
	e.endsWith(t, os.ErrDeadlineExceeded)
}

// Epoll reports a socket once per arrival of data, not while data is left.
// A megabyte sent at once arrives in a few segments but takes many reads of
// the reader's buffer, so the loop must go back for the rest by itself.
func TestLoopReadsWhatOneEdgeLeavesBehind(t *testing.T) {
	r := newRig(t)
	c, _ := r.conn(0, nil)
	var sb strings.Builder
	for i := 0; sb.Len() < 1<<20; i++ {
		sb.WriteString(strings.Repeat("e", i%100) + "\n")
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	go func() { _, _ = io.WriteString(c, sb.String()) }()
	got := make([]byte, sb.Len())
	if _, err := io.ReadFull(c, got); err != nil || string(got) != sb.String() {
		t.Fatalf("a megabyte of lines echoed wrong (%v)", err)
	}
}

// forward queues each line it reads on an upstream writer that always
// awaits answers, as a Redis connection does while its server works.
type forward struct{ up *wire.Writer }

func (f *forward) Frame(frame []byte, err error, r *Round) bool {
	if err != nil {
		return false
	}
	f.up.Lock()
	f.up.AppendLocked(frame)
	r.Hold(f.up)
	f.up.Unlock()
	return true
}

func (f *forward) Stopped() {}

// TestLoopBoundsHowLongItHoldsWrites: writes held for answers that never
// come (a blocked command, a subscription) still go out once the loop has
// waited holdFor with nothing to read.
func TestLoopBoundsHowLongItHoldsWrites(t *testing.T) {
	r := newRig(t)
	upConn, upPeer := testutil.TCPPair(t)
	up := wire.NewWriter(upConn, wire.Options{Timeout: 5 * time.Second, Max: 1 << 20, Server: true, Awaiting: func() bool { return true }})
	up.ReadBy(wire.Reading{Round: &r.lp.round.b}) // the loop reads the upstream connection too
	client, server := r.accept()
	w := wire.NewWriter(server, wire.Options{Timeout: 5 * time.Second, Max: 1 << 20})
	defer w.Close()
	if !r.lp.add(server, testutil.Lines{}, w, &forward{up: up}, Limits{}) {
		t.Fatal("the loop refused a TCP connection")
	}
	forwards(t, client, upPeer, "a held write never went out")
}

// TestLoopHoldsOnlyForAnswersItReads: a connection added to a loop has its
// writer held for due answers by that loop's batch only, since its answers
// wake no other loop (with two loops, a client's loop waited out holdFor
// for every request it held).
func TestLoopHoldsOnlyForAnswersItReads(t *testing.T) {
	reader, err := newLoop()
	if err != nil {
		t.Fatal(err)
	}
	other, err := newLoop()
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t)
	_, server := r.accept()
	w := wire.NewWriter(server, wire.Options{Timeout: 5 * time.Second, Max: 1 << 20, Server: true, Awaiting: func() bool { return true }})
	defer w.Close()
	if !reader.add(server, testutil.Lines{}, w, &forward{up: w}, Limits{}) {
		t.Fatal("the loop refused a TCP connection")
	}
	for _, c := range []struct {
		name string
		lp   *loop
		held int
	}{{"reading", reader, 1}, {"other", other, 0}} {
		c.lp.round.b.Open()
		w.Lock()
		w.AppendLocked([]byte("request\n"))
		w.HoldLocked(&c.lp.round.b)
		w.Unlock()
		held := c.lp.round.b.FlushIdle()
		c.lp.round.b.Flush()
		if held != c.held {
			t.Fatalf("FlushIdle of the %s loop kept %d writers held, want %d", c.name, held, c.held)
		}
	}
}

// forwards sends two lines from client and fails, saying why, unless each
// reaches upPeer.
func forwards(t *testing.T, client, upPeer net.Conn, why string) {
	t.Helper()
	for _, line := range []string{"first\n", "second\n"} {
		if _, err := io.WriteString(client, line); err != nil {
			t.Fatal(err)
		}
		_ = upPeer.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len(line))
		if _, err := io.ReadFull(upPeer, got); err != nil || string(got) != line {
			t.Fatalf("upstream got %q, %v; want %q: %s", got, err, line, why)
		}
	}
}

func TestLoopEndsAFrameThatDoesNotComeWholeInTime(t *testing.T) {
	r := newRig(t)
	lim := Limits{Frame: 300 * time.Millisecond}
	stuck, se := r.connWith(lim, nil)
	began := time.Now()
	if _, err := io.WriteString(stuck, "a line that never ends"); err != nil {
		t.Fatal(err)
	}
	// Whole frames, each slower than the frame time in all but none of
	// them slower itself: this connection is not the one at fault.
	steady, _ := r.connWith(lim, nil)
	rd := bufio.NewReader(steady)
	for range 6 {
		roundTrip(t, steady, rd, "whole")
		time.Sleep(100 * time.Millisecond)
	}
	se.endsWith(t, ErrFrameTimeout)
	if took := time.Since(began); took < 300*time.Millisecond {
		t.Fatalf("the unfinished frame was cut after %v, before its time", took)
	}
	// A frame trickled a byte at a time is cut too: bytes coming do not
	// extend a frame's time.
	trickle, te := r.connWith(lim, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			if _, err := io.WriteString(trickle, "x"); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	te.endsWith(t, ErrFrameTimeout)
	<-done
}

func TestLoopGivesTheBudgetBackWhenAConnectionEnds(t *testing.T) {
	r := newRig(t)
	b := wire.NewBudget(4 << 20)
	c, e := r.connWith(Limits{Buffer: wire.Limits{Budget: b, PerConn: 2 << 20}}, nil)
	if _, err := c.Write(bytes.Repeat([]byte("x"), 1<<20)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the loop to hold a MiB of an unfinished line within the budget", func() bool { return b.InUse() >= 512<<10 })
	// Past the connection's limit: the reading ends, and what it held is
	// given back.
	if _, err := c.Write(bytes.Repeat([]byte("x"), 2<<20)); err != nil {
		t.Fatal(err)
	}
	e.endsWith(t, wire.ErrConnLimit)
	testutil.Eventually(t, 5*time.Second, "the budget to be given back", func() bool { return b.InUse() == 0 })
}

func TestLoopTimesAFrameThatCameBeforeTheConnectionWasAdded(t *testing.T) {
	r := newRig(t)
	client, server := r.accept()
	// The loop may read this before add returns: the frame's time must
	// hold even so, not give way to the hour of idle time.
	if _, err := io.WriteString(client, "no end"); err != nil {
		t.Fatal(err)
	}
	e := &echo{w: wire.NewWriter(server, wire.Options{Timeout: 5 * time.Second, Max: 64 << 20}), ended: make(chan error, 1)}
	r.lp.registered = func() { time.Sleep(100 * time.Millisecond) } // the loop reads it meanwhile
	if !r.lp.add(server, testutil.Lines{}, e.w, e, Limits{Idle: time.Hour, Frame: 200 * time.Millisecond}) {
		t.Fatal("the loop refused a TCP connection")
	}
	t.Cleanup(e.w.Close)
	e.endsWith(t, ErrFrameTimeout)
}

// With the loops turned off (--event-loops=false), Serve reads a socket on
// a goroutine of its own, and the handler sees the same frames and end.
func TestConfigureTurnsTheLoopsOff(t *testing.T) {
	saved := DefaultOptions()
	Configure(Options{EventLoops: false, Gather: saved.Gather})
	t.Cleanup(func() { Configure(saved) })
	client, server := testutil.TCPPair(t)
	e := &echo{w: wire.NewWriter(server, wire.Options{Timeout: 5 * time.Second, Max: 1 << 20}), ended: make(chan error, 1)}
	t.Cleanup(e.w.Close)
	if Serve(server, testutil.Lines{}, e.w, e, Limits{}) {
		t.Fatal("Serve put a socket on an event loop with the loops off")
	}
	roundTrip(t, client, bufio.NewReader(client), "hello")
	client.Close()
	if err := <-e.ended; !errors.Is(err, io.EOF) {
		t.Fatalf("reading ended with %v, want EOF", err)
	}
	testutil.Eventually(t, 5*time.Second, "Stopped", func() bool { return e.stopped.Load() == 1 })
}
