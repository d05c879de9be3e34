package client

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// A destination stays while any connection to it is open and for the
// idle time after the last one closed; each change of the set is one
// request, subscribing to new names and unsubscribing from withdrawn
// ones.
func TestDestinationsKeepWhileUsed(t *testing.T) {
	now := time.Unix(1000, 0)
	d := NewDestinations(time.Minute)
	d.now = func() time.Time { return now }
	r := &lazyReport{d: d}

	d.Opened("a:1")
	d.Opened("a:1")
	d.Opened("b:2")
	if req := r.request(); req.GetTypeUrl() != config.LazyDestinationType || !slices.Equal(req.GetResourceNamesSubscribe(), []string{"a:1", "b:2"}) {
		t.Fatalf("first report = %v, want a:1 and b:2", req)
	}
	if req := r.request(); req != nil {
		t.Errorf("report without a change = %v, want none", req)
	}
	d.Closed("a:1")
	d.Closed("b:2")
	now = now.Add(2 * time.Minute)
	d.Expire()
	if req := r.request(); !slices.Equal(req.GetResourceNamesUnsubscribe(), []string{"b:2"}) || len(req.GetResourceNamesSubscribe()) != 0 {
		t.Errorf("after b's only connection closed 2 minutes ago = %v, want b:2 withdrawn and a:1 (one connection open) kept", req)
	}
	d.Closed("a:1")
	now = now.Add(30 * time.Second)
	d.Expire()
	if req := r.request(); req != nil {
		t.Errorf("a:1 withdrawn 30 s after its last connection closed: %v", req)
	}
	d.Opened("a:1") // used again before it expired
	d.Closed("a:1")
	now = now.Add(59 * time.Second)
	d.Expire()
	if !d.Names()["a:1"] {
		t.Error("a:1 expired though used 59 s ago")
	}
}

// The set is capped, and names longer than a destination can be are
// ignored.
func TestDestinationsCapped(t *testing.T) {
	d := NewDestinations(time.Minute)
	for i := range config.MaxLazyDestinations + 5 {
		d.Opened(fmt.Sprintf("svc-%d:1", i))
	}
	d.Opened(string(make([]byte, config.MaxLazyDestinationLength+1)))
	d.Opened("")
	if n := len(d.Names()); n != config.MaxLazyDestinations {
		t.Errorf("%d destinations held, want the cap %d", n, config.MaxLazyDestinations)
	}
}
