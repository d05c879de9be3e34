package hbone

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	rtestutil "github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// lineEcho answers each line of a stream with the line, noting whether it
// was handed the line on the HTTP/2 connection's frame reader, and how
// reading ended.
type lineEcho struct {
	w *wire.Writer

	mu          sync.Mutex
	onReader    bool
	offReader   int
	ended       error
	stoppedOnce chan struct{}
}

func (e *lineEcho) Frame(frame []byte, err error, r *netloop.Round) bool {
	if err != nil {
		e.mu.Lock()
		e.ended = err
		e.mu.Unlock()
		e.w.Close()
		return false
	}
	buf := make([]byte, 8<<10)
	stack := string(buf[:runtime.Stack(buf, false)])
	e.mu.Lock()
	if strings.Contains(stack, "(*conn).run") {
		e.onReader = true
	} else {
		e.offReader++
	}
	e.mu.Unlock()
	e.w.Lock()
	e.w.AppendLocked(frame)
	r.Hold(e.w)
	e.w.Unlock()
	return true
}

func (e *lineEcho) Stopped() { close(e.stoppedOnce) }

// A stream the proxy serves through netloop is fed: its lines are split
// and handled on the connection's frame reader, with no goroutine reading
// the stream, and their answers go out when the reader next reads.
func TestStreamsAreFedOnTheFrameReader(t *testing.T) {
	m := newMesh("mesh")
	ts := startServer(t, m, DefaultLimits())
	echoes := make(chan *lineEcho, 10)
	ts.Open = func(r Request) (func(net.Conn), string) {
		return func(nc net.Conn) {
			// The writer takes the stream's WouldWait itself.
			e := &lineEcho{w: wire.NewWriter(nc, wire.Options{Timeout: 5 * time.Second, Max: 1 << 20}), stoppedOnce: make(chan struct{})}
			if !netloop.Serve(nc, rtestutil.Lines{}, e.w, e, netloop.Limits{}) {
				t.Error("netloop did not feed an HBONE stream")
			}
			echoes <- e
		}, ""
	}
	cc, err := dialH2(t, ts.addr, m.clientTLS(t, callerID, "h2"))
	if err != nil {
		t.Fatal(err)
	}
	var all []*lineEcho
	for i := range 5 {
		tn, status := open(t, cc, dest)
		if status != http.StatusOK {
			t.Fatalf("CONNECT: %d", status)
		}
		e := <-echoes
		all = append(all, e)
		rd := bufio.NewReader(tn)
		for j := range 20 {
			line := fmt.Sprintf("stream %d line %d\n", i, j)
			// Each line in two DATA frames: the feed joins them.
			if _, err := io.WriteString(tn, line[:5]); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(tn, line[5:]); err != nil {
				t.Fatal(err)
			}
			_ = tn.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := rd.ReadString('\n')
			if err != nil || got != line {
				t.Fatalf("echo of %q = %q, %v", line, got, err)
			}
		}
		tn.CloseWrite()
		select {
		case <-e.stoppedOnce:
		case <-time.After(5 * time.Second):
			t.Fatal("the caller's END_STREAM did not end the feed")
		}
		if rest, err := io.ReadAll(tn); len(rest) != 0 || err != nil {
			t.Errorf("after the end: %q, %v", rest, err)
		}
	}
	for i, e := range all {
		e.mu.Lock()
		if !e.onReader || e.offReader > 0 || !errors.Is(e.ended, io.EOF) {
			t.Errorf("stream %d: on the frame reader %v, elsewhere %d times, ended with %v", i, e.onReader, e.offReader, e.ended)
		}
		e.mu.Unlock()
	}
}

// A stream with input waiting in its buffer is not fed: what it holds
// must be read first.
func TestStreamWithInputWaitingIsNotFed(t *testing.T) {
	ts, cc := connected(t, DefaultLimits())
	tn, _ := open(t, cc, dest)
	s := ts.next(t)
	if _, err := tn.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the data to arrive", func() bool {
		s.rmu.Lock()
		defer s.rmu.Unlock()
		return len(s.buf) > 0
	})
	if s.Feed(&netloop.Feed{}) {
		t.Fatal("a stream with unread input took a feed")
	}
	if got := readN(t, s, 5); got != "early" {
		t.Fatalf("read %q", got)
	}
}
