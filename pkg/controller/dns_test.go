package controller_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/controller/controllertest"
)

// dnsEntry is a Dubbo service resolved by DNS, without endpoints: the
// controller resolves its host.
const dnsEntry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: demo}
spec:
  hosts: [db.example.com]
  resolution: DNS
  ports: [{name: tcp-dubbo, number: 20880, protocol: TCP}]
`

// fakeDNS answers one name with addresses a test changes, and counts the
// lookups.
type fakeDNS struct {
	mu      sync.Mutex
	addrs   []string
	fail    bool
	lookups int
}

func (f *fakeDNS) set(addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs, f.fail = addrs, false
}

func (f *fakeDNS) resolve(_ context.Context, host string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if host != "db.example.com" || f.fail {
		return nil, errors.New("no such host")
	}
	return append([]string(nil), f.addrs...), nil
}

func (f *fakeDNS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups
}

func dnsInputs(t *testing.T) *controller.Inputs {
	t.Helper()
	in := &controller.Inputs{}
	if err := in.AddYAML([]byte(dnsEntry)); err != nil {
		t.Fatal(err)
	}
	return in
}

func dnsEndpoints(t *testing.T, ix *controller.Index) string {
	t.Helper()
	_, eps := controllertest.Simulate(t, ix.Generate(&controller.Proxy{ID: "p", Namespace: "demo"}), 20880, nil)
	return strings.Join(eps, " ")
}

// ResolveAgain reports a name only when its answer changed, and a failed
// lookup keeps the last good answer in the next build.
func TestResolveAgain(t *testing.T) {
	dns := &fakeDNS{addrs: []string{"10.0.0.1"}}
	b := &controller.Builder{Options: controller.Options{Resolve: dns.resolve}}
	in := dnsInputs(t)
	if got := dnsEndpoints(t, b.Build(in)); got != "10.0.0.1:20880" {
		t.Fatalf("endpoints %q", got)
	}
	if got := b.ResolveAgain(context.Background()); len(got) != 0 {
		t.Fatalf("unchanged answer reported as changed: %v", got)
	}
	dns.set("10.0.0.3", "10.0.0.2")
	if got := b.ResolveAgain(context.Background()); strings.Join(got, " ") != "db.example.com" {
		t.Fatalf("changed = %v, want [db.example.com]", got)
	}
	if got := dnsEndpoints(t, b.Build(in)); got != "10.0.0.2:20880 10.0.0.3:20880" {
		t.Fatalf("endpoints after the change %q", got)
	}
	dns.set("10.0.0.2", "10.0.0.3") // the same answer in another order
	if got := b.ResolveAgain(context.Background()); len(got) != 0 {
		t.Fatalf("a reordered answer reported as changed: %v", got)
	}
	dns.mu.Lock()
	dns.fail = true
	dns.mu.Unlock()
	if got := b.ResolveAgain(context.Background()); len(got) != 0 {
		t.Fatalf("a failed lookup reported as a change: %v", got)
	}
	if got := dnsEndpoints(t, b.Build(in)); got != "10.0.0.2:20880 10.0.0.3:20880" {
		t.Fatalf("a failed lookup dropped the endpoints: %q", got)
	}
}

// A changed DNS answer reaches the proxy's resources with no other input
// changing, and an unchanged one makes no push.
func TestDNSRefreshPushesChangedAnswers(t *testing.T) {
	dns := &fakeDNS{addrs: []string{"10.0.0.1"}}
	in := dnsInputs(t)
	pushes := make(chan *controller.Index, 10)
	p := &controller.Pipeline{
		Builder:  &controller.Builder{Options: controller.Options{Resolve: dns.resolve}},
		Inputs:   func() (*controller.Inputs, error) { return in, nil },
		Push:     func(ix *controller.Index, _ time.Time) { pushes <- ix },
		MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond,
		DNSRefresh: 10 * time.Millisecond,
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	p.Changed()
	next := func() *controller.Index {
		t.Helper()
		select {
		case ix := <-pushes:
			return ix
		case <-time.After(5 * time.Second):
			t.Fatal("no push")
			return nil
		}
	}
	if got := dnsEndpoints(t, next()); got != "10.0.0.1:20880" {
		t.Fatalf("first push: endpoints %q", got)
	}
	// Let several refreshes run on an unchanged answer: none may push.
	// (A push they caused would come 1-5 ms after its refresh, well
	// before the later refreshes are counted.)
	deadline := time.Now().Add(5 * time.Second)
	for start := dns.count(); dns.count() < start+5; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the names were not looked up again")
		}
	}
	select {
	case <-pushes:
		t.Fatal("an unchanged DNS answer made a push")
	default:
	}
	dns.set("10.0.0.9")
	if got := dnsEndpoints(t, next()); got != "10.0.0.9:20880" {
		t.Fatalf("after the DNS change: endpoints %q, want 10.0.0.9:20880", got)
	}
}
