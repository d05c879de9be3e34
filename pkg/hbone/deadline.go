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
//
// Setting one is cheap, since the proxy sets one around every read and
// write: its one timer is moved only when the new deadline is sooner than
// the timer's; a timer that fires before the deadline in force waits on
// for it.
type deadline struct {
	mu      sync.Mutex
	at      time.Time // the deadline in force; zero: none
	fireAt  time.Time // when the timer fires; zero: it is not running
	timer   *time.Timer
	stopped bool
	expired chan struct{} // closed while the deadline in force has passed
}

func newDeadline() *deadline { return &deadline{expired: make(chan struct{})} }

// set replaces the deadline; the zero time means none.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.expired:
		d.expired = make(chan struct{})
	default:
	}
	d.at = t
	if t.IsZero() || d.stopped {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		close(d.expired)
		return
	}
	if !d.fireAt.IsZero() && !d.fireAt.After(t) {
		return // the timer fires first, and waits on for t
	}
	d.fireAt = t
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, d.fire)
	} else {
		d.timer.Reset(wait)
	}
}

func (d *deadline) fire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fireAt = time.Time{}
	if d.at.IsZero() || d.stopped {
		return
	}
	if wait := time.Until(d.at); wait > 0 {
		d.fireAt = d.at
		d.timer.Reset(wait)
		return
	}
	select {
	case <-d.expired:
	default:
		close(d.expired)
	}
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
	d.stopped = true
	if d.timer != nil {
		d.timer.Stop()
	}
}
