package accesslog

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// queueLines bounds the lines waiting for a writer: at a few hundred bytes
// a line, about a megabyte. A writer that falls this far behind (a full
// disk, a stopped log reader on a pipe) loses lines, not requests.
const queueLines = 4096

// Logger writes a listener's lines under its Config.
type Logger struct {
	cfg  *Config
	sink *sink
}

// Config is the config the logger was made with.
func (l *Logger) Config() *Config { return l.cfg }

// Sample reports whether the request about to end is logged, per the
// config's sample rate.
func (l *Logger) Sample() bool {
	p := l.cfg.Percent
	return p >= 100 || p > 0 && rand.Float64()*100 < p
}

var bufs = sync.Pool{New: func() any { return new([]byte) }}

// Log formats e and queues its line; it never blocks. A line that finds
// the queue full is dropped and counted.
func (l *Logger) Log(e *Entry) {
	bp := bufs.Get().(*[]byte)
	*bp = l.cfg.Append((*bp)[:0], e)
	select {
	case l.sink.lines <- bp:
	default:
		bufs.Put(bp)
		l.sink.dropped.Inc()
	}
}

// Sinks are the open destinations of lines, one writer each, shared by
// every listener and config that names the same path.
type Sinks struct {
	dropped *prometheus.CounterVec

	mu    sync.Mutex
	open  map[string]*sink
	close bool
}

// NewSinks returns no open sinks; reg, when not nil, gets the metric of
// dropped lines (rosetta_access_log_dropped_total, by path).
func NewSinks(reg prometheus.Registerer) *Sinks {
	s := &Sinks{open: map[string]*sink{}, dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_access_log_dropped_total",
		Help: "Access log lines dropped because the writer of their destination was behind.",
	}, []string{"path"})}
	if reg != nil {
		reg.MustRegister(s.dropped)
	}
	return s
}

// Logger returns a logger for cfg, opening its destination unless it is
// open already: a file is created if needed and appended to.
func (s *Sinks) Logger(cfg *Config) (*Logger, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.close {
		return nil, fmt.Errorf("access log: closed")
	}
	sk := s.open[cfg.Path]
	if sk == nil {
		w, err := destination(cfg.Path)
		if err != nil {
			return nil, fmt.Errorf("path: %w", err)
		}
		sk = &sink{w: w, lines: make(chan *[]byte, queueLines), quit: make(chan struct{}), done: make(chan struct{}), dropped: s.dropped.WithLabelValues(cfg.Path)}
		go sk.run()
		s.open[cfg.Path] = sk
	}
	return &Logger{cfg: cfg, sink: sk}, nil
}

// Close writes what is queued and closes the files. A line logged after
// Close is not written.
func (s *Sinks) Close() {
	s.mu.Lock()
	s.close = true
	open := s.open
	s.open = map[string]*sink{}
	s.mu.Unlock()
	for _, sk := range open {
		close(sk.quit)
		<-sk.done
	}
}

func destination(path string) (io.Writer, error) {
	switch path {
	case Stdout:
		return os.Stdout, nil
	case Stderr:
		return os.Stderr, nil
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// sink is one destination and its writer goroutine, the only one that
// writes there: lines never interleave.
type sink struct {
	w       io.Writer
	lines   chan *[]byte
	quit    chan struct{} // closed by Close; lines is never closed, so Log cannot panic
	done    chan struct{}
	dropped prometheus.Counter
}

// maxBatch bounds the bytes one write carries.
const maxBatch = 64 << 10

// run writes lines as they come, each write holding whole lines: those
// queued while the last write ran go out together.
func (sk *sink) run() {
	defer close(sk.done)
	var batch []byte
	for {
		select {
		case bp := <-sk.lines:
			batch, n := sk.gather(append(batch[:0], *bp...))
			bufs.Put(bp)
			if _, err := sk.w.Write(batch); err != nil {
				sk.dropped.Add(float64(n + 1)) // a destination that fails loses its lines, never the requests
			}
		case <-sk.quit:
			sk.flush()
			return
		}
	}
}

// gather appends the lines queued now to batch, up to maxBatch, and
// counts them.
func (sk *sink) gather(batch []byte) ([]byte, int) {
	n := 0
	for len(batch) < maxBatch {
		select {
		case bp := <-sk.lines:
			batch = append(batch, *bp...)
			bufs.Put(bp)
			n++
		default:
			return batch, n
		}
	}
	return batch, n
}

// flush writes what is queued and closes a file.
func (sk *sink) flush() {
	for {
		batch, n := sk.gather(nil)
		if n == 0 {
			break
		}
		_, _ = sk.w.Write(batch)
	}
	if c, ok := sk.w.(io.Closer); ok && sk.w != os.Stdout && sk.w != os.Stderr {
		_ = c.Close()
	}
}
