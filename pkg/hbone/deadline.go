package hbone

import (
	"sync"
	"time"
)

// deadline is one direction's deadline of a Stream. Unlike the deadlines
// of an HTTP/2 stream, which reset or close it when they pass, it only
// makes the waits it bounds give up, and setting a new one makes the
// stream usable again, as a socket's deadline does: a connection that
// timed out while idle keeps reading while its requests are in flight.
type deadline struct {
	mu      sync.Mutex
	timer   *time.Timer
	gen     uint64        // counts set calls; a timer of an older one does nothing
	expired chan struct{} // closed while the deadline in force has passed
}

func newDeadline() *deadline { return &deadline{expired: make(chan struct{})} }

// set replaces the deadline; the zero time means none.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	select {
	case <-d.expired:
		d.expired = make(chan struct{})
	default:
	}
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		close(d.expired)
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(wait, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen {
			close(d.expired)
		}
	})
}

// done is closed once the deadline in force passes; a wait takes it when
// it starts.
func (d *deadline) done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expired
}

// stop releases the timer.
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}
