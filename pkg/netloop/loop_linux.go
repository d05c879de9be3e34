//go:build linux

package netloop

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rosetta-mesh/rosetta/internal/sysio"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// loops are shared by every listener of the process, one per P.
var loops struct {
	once sync.Once
	all  []*loop
	next atomic.Uint32
}

// serveOnLoop is ServeOn for a socket (netloop.go).
func serveOnLoop(home *Round, nc net.Conn, c codec.Codec, w *wire.Writer, h Handler, lim Limits) bool {
	if off.Load() {
		return false
	}
	lp := loopOf(home)
	if lp == nil {
		lp = nextLoop()
	}
	return lp != nil && lp.add(nc, c, w, h, lim)
}

func loopOf(r *Round) *loop {
	if !r.Loop() {
		return nil
	}
	for _, lp := range started() {
		if &lp.round == r {
			return lp
		}
	}
	return nil
}

func nextLoop() *loop {
	all := started()
	if len(all) == 0 {
		return nil
	}
	return all[int(loops.next.Add(1))%len(all)]
}

// started starts the loops, one per P, on first use.
func started() []*loop {
	loops.once.Do(func() {
		for range runtime.GOMAXPROCS(0) {
			lp, err := newLoop()
			if err != nil {
				return
			}
			loops.all = append(loops.all, lp)
			go lp.run()
		}
	})
	return loops.all
}

// wakeToken marks the loop's own eventfd among epoll's events.
const wakeToken = 0

type loop struct {
	ep    *os.File // the epoll descriptor; kept so it is never collected
	rc    syscall.RawConn
	epfd  int
	wake  int // an eventfd other goroutines write to wake the loop
	round Round

	mu    sync.Mutex
	conns map[uint32]*loopConn
	next  uint32
	// ended were closed by someone else; idle have an idle timer due. Both
	// are handled on the loop, the only goroutine that reads.
	ended []*loopConn
	idle  []*loopConn
	// fresh are TLS connections just added, read once without an event.
	fresh []*loopConn
	// registered, when set (by tests), runs in add once the loop may read
	// the connection: what add does after must hold whatever the loop did.
	registered func()

	// again are connections whose last read filled the buffer it was
	// given: epoll is edge-triggered and will not report them again, so the
	// next round reads them without being told. The loop's alone.
	again []*loopConn

	// The loop's alone: epoll's events, the rounds read since upstream
	// writes last went out, and poll's outcome and function (made once, so
	// that a wait allocates nothing).
	events  []unix.EpollEvent
	rounds  int
	ready   int
	waitErr error
	pollFn  func(fd uintptr) bool
	// holding: the wait is bounded by holdFor, since writes are held.
	holding bool
	gather  gather
	// polling: the last wait returned nothing to poll again for requests
	// clients owe (gather.wait).
	polling bool
}

// loopConn is a connection as its loop sees it; all but token is the loop's
// alone.
type loopConn struct {
	h    Handler
	idle time.Duration
	// frameLimit bounds how long a frame may take to arrive whole once
	// its first bytes have (0: no bound); begun is when they did.
	frameLimit time.Duration
	begun      time.Time
	token      uint32
	rc         syscall.RawConn
	fr         *wire.Reader
	src        onceReader
	lastRead   time.Time
	timer      *time.Timer
	done       bool
	client     bool // its writer is not to a server: a client's connection
	owed       bool // on the loop's again list
}

func newLoop() (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeToken}); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, err
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, err
	}
	ep := os.NewFile(uintptr(epfd), "epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		unix.Close(wake)
		return nil, err
	}
	lp := &loop{ep: ep, rc: rc, epfd: epfd, wake: wake, conns: map[uint32]*loopConn{}, events: make([]unix.EpollEvent, 256)}
	lp.pollFn = lp.poll
	lp.round.b.SetLoop()
	return lp, nil
}

// add registers nc; false leaves it to a goroutine of its own.
func (lp *loop) add(nc net.Conn, c codec.Codec, w *wire.Writer, h Handler, lim Limits) bool {
	// A TLS connection made by TLSServer or TLSClient is read through its
	// socket: frames come from what crypto/tls decrypts of it.
	tc, _ := nc.(*tls.Conn)
	var ts *tlsSocket
	if tc != nil {
		var ok bool
		if ts, ok = tc.NetConn().(*tlsSocket); !ok {
			return false
		}
		nc = ts.Conn
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	lc := &loopConn{h: h, idle: lim.Idle, frameLimit: lim.Frame, rc: rc, lastRead: time.Now(), client: !w.ToServer()}
	lc.src.init(rc)
	if ts != nil {
		ts.loopTakes(&lc.src, rc)
		lc.fr = wire.NewReader(&tlsReader{tc: tc}, c)
	} else {
		lc.fr = wire.NewReader(&lc.src, c)
	}
	lc.fr.SetLimits(lim.Buffer)
	if lim.Idle > 0 || lim.Frame > 0 {
		lc.timer = time.AfterFunc(time.Duration(math.MaxInt64), func() { lp.post(&lp.idle, lc) })
		if lim.Idle > 0 {
			// Before the loop can read lc: once it does, a frame begun
			// may set the timer sooner, and this must not undo that.
			lc.timer.Reset(lim.Idle)
		}
	}
	lp.mu.Lock()
	for lp.next++; lp.next == wakeToken || lp.conns[lp.next] != nil; lp.next++ {
	}
	lc.token = lp.next
	lp.conns[lc.token] = lc
	lp.mu.Unlock()
	var cerr error
	// Edge-triggered, as twemproxy registers its sockets: a level-triggered
	// descriptor is polled again by the next epoll_wait after every report,
	// which costs the kernel a second look at each socket per request.
	err = rc.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(lc.token)})
	})
	if err != nil || cerr != nil {
		lp.mu.Lock()
		delete(lp.conns, lc.token)
		lp.mu.Unlock()
		if lc.timer != nil {
			lc.timer.Stop()
		}
		if ts != nil {
			ts.loopTakes(nil, nil) // the caller reads it on a goroutine
		}
		return false
	}
	if lp.registered != nil {
		lp.registered()
	}
	rd := wire.Reading{Round: &lp.round.b, Closed: func() { lp.post(&lp.ended, lc) }}
	if ts != nil {
		rd.WouldWait = ts.wouldWait
	}
	if !w.ReadBy(rd) {
		lp.post(&lp.ended, lc)
	}
	if ts != nil {
		// crypto/tls may hold input read with the handshake's last
		// records, which no edge will report.
		lp.post(&lp.fresh, lc)
	}
	return true
}

// post queues lc for the loop and wakes it; any goroutine may call it.
func (lp *loop) post(list *[]*loopConn, lc *loopConn) {
	lp.mu.Lock()
	*list = append(*list, lc)
	lp.mu.Unlock()
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(lp.wake, one[:]) // EAGAIN: the counter is full, so a wake-up is pending anyway
}

func (lp *loop) run() {
	for {
		// Answers go out after every round. Requests for Server writers
		// (upstream connections) wait while more input is ready, up to
		// maxRounds, so one write upstream carries the requests of many
		// clients, as twemproxy's writes do; everything goes out as soon
		// as nothing is left to read, unless the loop gathers requests its
		// clients owe for an in-order server (gather_linux.go).
		n := lp.wait()
		if n == 0 && lp.polling {
			continue // polled for owed requests and found none yet
		}
		now := time.Now()
		lp.round.b.SetNow(now)
		for _, ev := range lp.events[:n] {
			if ev.Fd == wakeToken {
				var buf [8]byte
				_, _ = unix.Read(lp.wake, buf[:])
				continue
			}
			lp.mu.Lock()
			lc := lp.conns[uint32(ev.Fd)]
			lp.mu.Unlock()
			if lc != nil {
				lp.readable(lc, now)
			}
		}
		lp.readAgain(now)
		lp.queued()
		if lp.rounds++; lp.rounds >= lp.gather.rounds() {
			lp.round.b.Flush()
			lp.rounds = 0
		} else {
			lp.round.b.FlushEager()
		}
		lp.gather.answered(lp.round.b.TakeAnswered())
	}
}

// wait returns the events epoll has; when it has none it flushes the
// round's batch, resets rounds and parks until it has some, or returns none
// with polling set when it polls for requests clients owe.
func (lp *loop) wait() int {
	lp.polling = false
	if len(lp.again) > 0 {
		// Reads are owed: look at epoll without parking.
		n, err := sysio.EpollNow(lp.epfd, lp.events)
		if err != nil {
			return 0
		}
		return n
	}
	for {
		err := lp.rc.Read(lp.pollFn)
		if err == nil && lp.waitErr == nil {
			return lp.ready
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Held writes waited holdFor without their answers.
			lp.round.b.Flush()
			lp.setHold(false)
			continue
		}
		// Not expected from a valid epoll descriptor; do not spin on it.
		time.Sleep(10 * time.Millisecond)
	}
}

// setHold bounds the coming wait by holdFor, or lifts the bound. A bound
// already set stays as it is: it only ends the wait sooner.
func (lp *loop) setHold(on bool) {
	if on == lp.holding {
		return
	}
	lp.holding = on
	var t time.Time
	if on {
		t = time.Now().Add(holdFor)
	}
	_ = lp.ep.SetReadDeadline(t)
}

// poll is the function wait's RawConn.Read runs; false parks the loop until
// epoll's descriptor is readable.
func (lp *loop) poll(fd uintptr) bool {
	lp.ready, lp.waitErr = sysio.EpollNow(int(fd), lp.events)
	if lp.ready > 0 || (lp.waitErr != nil && lp.waitErr != unix.EINTR) {
		return true
	}
	if lp.gather.wait(&lp.round.b) {
		lp.polling = true // with nothing ready: the loop polls again
		return true
	}
	// An edge after this goes on counting: Read armed the wait before
	// calling here.
	lp.setHold(lp.round.b.FlushIdle() > 0)
	lp.rounds = 0
	return false
}

// readable handles what one read of lc gives.
func (lp *loop) readable(lc *loopConn, now time.Time) {
	if lc.done {
		return
	}
	lc.src.armed = true
	lc.lastRead = now
	for {
		frame, err := lc.fr.Next()
		if errors.Is(err, errWouldBlock) {
			if lc.src.more && !lc.owed {
				lc.owed = true
				lp.again = append(lp.again, lc)
			}
			if lc.frameLimit > 0 {
				lp.watchFrame(lc, now)
			}
			return
		}
		lc.begun = time.Time{}
		if err == nil {
			lp.round.Open()
			if lc.client {
				lp.gather.request(now)
			}
		}
		if !lc.h.Frame(frame, err, &lp.round) {
			lp.stop(lc)
			return
		}
	}
}

// readAgain reads the connections whose last read filled its buffer, once
// each; one that fills it again goes back on the list for the next round.
func (lp *loop) readAgain(now time.Time) {
	owed := len(lp.again)
	for i := 0; i < owed; i++ {
		lc := lp.again[i]
		lc.owed = false
		// Unless this round's events read it short since.
		if lc.src.more {
			lp.readable(lc, now) // may append to lp.again
		}
	}
	left := copy(lp.again, lp.again[owed:])
	clear(lp.again[left:])
	lp.again = lp.again[:left]
}

// queued handles the connections others posted: new TLS ones are read,
// closed ones stop, those with an idle timer due are checked.
func (lp *loop) queued() {
	lp.mu.Lock()
	ended, idle, fresh := lp.ended, lp.idle, lp.fresh
	lp.ended, lp.idle, lp.fresh = nil, nil, nil
	lp.mu.Unlock()
	for _, lc := range fresh {
		lp.readable(lc, time.Now())
	}
	for _, lc := range ended {
		lp.stop(lc)
	}
	for _, lc := range idle {
		lp.checkIdle(lc)
	}
}

// watchFrame notes when a frame that is not yet whole began, and has the
// timer go off when it is due.
func (lp *loop) watchFrame(lc *loopConn, now time.Time) {
	if lc.fr.Buffered() == 0 || !lc.begun.IsZero() {
		return
	}
	lc.begun = now
	lc.timer.Reset(lp.nextCheck(lc, now))
}

// nextCheck is how long until lc's idle time or frame time is up.
func (lp *loop) nextCheck(lc *loopConn, now time.Time) time.Duration {
	wait := time.Duration(math.MaxInt64)
	if lc.idle > 0 {
		wait = lc.idle - now.Sub(lc.lastRead)
	}
	if lc.frameLimit > 0 && !lc.begun.IsZero() {
		wait = min(wait, lc.frameLimit-now.Sub(lc.begun))
	}
	return wait
}

// checkIdle ends a connection whose frame did not come whole in time, and
// tells the handler of one without input for its idle time, which may keep
// reading (true) or stop.
func (lp *loop) checkIdle(lc *loopConn) {
	if lc.done {
		return
	}
	now := time.Now()
	if lc.frameLimit > 0 && !lc.begun.IsZero() && now.Sub(lc.begun) >= lc.frameLimit {
		lc.h.Frame(nil, lc.fr.LimitError(ErrFrameTimeout), &lp.round)
		lp.stop(lc)
		return
	}
	if lc.idle > 0 && now.Sub(lc.lastRead) >= lc.idle {
		if !lc.h.Frame(nil, os.ErrDeadlineExceeded, &lp.round) {
			lp.stop(lc)
			return
		}
		lc.lastRead = now // the handler keeps it: a new idle period
	}
	lc.timer.Reset(lp.nextCheck(lc, now))
}

// stop ends reading lc, once.
func (lp *loop) stop(lc *loopConn) {
	if lc.done {
		return
	}
	lc.done = true
	lp.mu.Lock()
	delete(lp.conns, lc.token)
	lp.mu.Unlock()
	// A closed socket has left epoll with its descriptor; Control refuses
	// to run then, so a reused descriptor number is never touched.
	_ = lc.rc.Control(func(fd uintptr) {
		_ = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
	if lc.timer != nil {
		lc.timer.Stop()
	}
	lc.fr.Release()
	lc.h.Stopped()
}

// onceReader reads a socket at most once per readiness, without waiting.
type onceReader struct {
	rc    syscall.RawConn
	armed bool
	// more: the last read filled the buffer, so the socket may hold more
	// than epoll, edge-triggered, will report again.
	more bool
	// The read's buffer and outcome, and the function RawConn runs, which
	// is made once: a closure per read would cost allocations per read.
	p   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

func (r *onceReader) init(rc syscall.RawConn) {
	r.rc = rc
	r.fn = r.readFD
}

func (r *onceReader) readFD(fd uintptr) bool {
	for {
		r.n, r.err = sysio.Read(int(fd), r.p)
		if r.err != syscall.EINTR {
			return true
		}
	}
}

func (r *onceReader) Read(p []byte) (int, error) {
	if !r.armed {
		return 0, errWouldBlock
	}
	r.armed = false
	r.more = false
	r.p = p
	cerr := r.rc.Read(r.fn)
	n, err := r.n, r.err
	r.p, r.err = nil, nil
	switch {
	case cerr != nil:
		return 0, cerr
	case err == syscall.EAGAIN:
		return 0, errWouldBlock
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	r.more = n == len(p)
	return n, nil
}
