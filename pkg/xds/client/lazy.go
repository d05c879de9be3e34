package client

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// Destinations is what a proxy in lazy mode reports to the controller:
// the destinations its callers use (the LazyListener destination of each
// listener a connection arrived on). A destination is reported when its
// first connection opens and kept while any connection to it is open and
// for Idle after the last one closed; then it is withdrawn, and the
// controller narrows the proxy's config again. Reports go over the ADS
// stream, as delta subscriptions to config.LazyDestinationType.
type Destinations struct {
	idle time.Duration
	now  func() time.Time

	mu sync.Mutex
	// open counts the open connections of each destination in use;
	// closed is when the last connection of one without any closed.
	open   map[string]int
	closed map[string]time.Time
	// wake is signalled when the set changes.
	wake chan struct{}
}

// NewDestinations makes a Destinations that keeps an unused destination
// for idle.
func NewDestinations(idle time.Duration) *Destinations {
	return &Destinations{idle: idle, now: time.Now, open: map[string]int{}, closed: map[string]time.Time{}, wake: make(chan struct{}, 1)}
}

// Opened notes a connection to a destination.
func (d *Destinations) Opened(name string) {
	if name == "" || len(name) > config.MaxLazyDestinationLength {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	_, known := d.closed[name]
	if d.open[name] == 0 && !known {
		if len(d.open)+len(d.closed) >= config.MaxLazyDestinations {
			return // its calls go on through the fallback
		}
		d.signal()
	}
	delete(d.closed, name)
	d.open[name]++
}

// Closed notes the end of a connection Opened noted.
func (d *Destinations) Closed(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.open[name]
	if !ok {
		return
	}
	if n > 1 {
		d.open[name] = n - 1
		return
	}
	delete(d.open, name)
	d.closed[name] = d.now()
}

// Expire withdraws the destinations unused for longer than idle.
func (d *Destinations) Expire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for name, at := range d.closed {
		if now.Sub(at) >= d.idle {
			delete(d.closed, name)
			d.signal()
		}
	}
}

// Run expires unused destinations until ctx ends, checking ten times per
// idle period (at least every second).
func (d *Destinations) Run(ctx context.Context) {
	t := time.NewTicker(max(d.idle/10, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.Expire()
		}
	}
}

// Names are the destinations reported now.
func (d *Destinations) Names() map[string]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]bool, len(d.open)+len(d.closed))
	for name := range d.open {
		out[name] = true
	}
	for name := range d.closed {
		out[name] = true
	}
	return out
}

// signal wakes the stream; callers hold d.mu.
func (d *Destinations) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// lazyReport is one stream's side of Destinations: what it subscribed.
type lazyReport struct {
	d    *Destinations
	sent map[string]bool
}

// changes returns the destinations to subscribe to and to unsubscribe
// from on this stream, sorted, and notes them as sent.
func (r *lazyReport) changes() (add, drop []string) {
	now := r.d.Names()
	for name := range now {
		if !r.sent[name] {
			add = append(add, name)
		}
	}
	for name := range r.sent {
		if !now[name] {
			drop = append(drop, name)
		}
	}
	slices.Sort(add)
	slices.Sort(drop)
	r.sent = maps.Clone(now)
	return add, drop
}

// request is the delta request that brings the stream's subscriptions in
// line with the destinations; nil when they are.
func (r *lazyReport) request() *discoveryv3.DeltaDiscoveryRequest {
	add, drop := r.changes()
	if len(add) == 0 && len(drop) == 0 {
		return nil
	}
	return &discoveryv3.DeltaDiscoveryRequest{TypeUrl: config.LazyDestinationType, ResourceNamesSubscribe: add, ResourceNamesUnsubscribe: drop}
}

// sendLazy reports the destinations that changed since the stream last
// did; first carries the node, as the stream's first request (so the
// controller knows them before it sends the proxy any config).
func (s *deltaStream) sendLazy(first bool) error {
	if s.lazy == nil {
		return nil
	}
	req := s.lazy.request()
	if req == nil {
		return nil
	}
	if first {
		req.Node = s.node
	}
	if err := s.stream.Send(req); err != nil {
		return fmt.Errorf("xds/client: report destinations: %w", err)
	}
	return nil
}
