// Package proxy is Rosetta's data plane: listeners that decode frames with a
// protocol's codec, route them on their attributes, and send them over pooled,
// multiplexed upstream connections, with timeouts, retries, faults, mirroring
// and rate limits.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/accesslog"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/hbone"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/observability"
	"github.com/rosetta-mesh/rosetta/pkg/tracing"
	"github.com/rosetta-mesh/rosetta/pkg/upstream"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// Proxy runs listeners for the configuration last applied.
type Proxy struct {
	log     *slog.Logger
	metrics *observability.Metrics
	mgr     *upstream.Manager
	snap    atomic.Pointer[snapshot]
	// identity terminates and originates Istio mutual TLS; nil: the proxy
	// has none, and a config that asks for mTLS is refused.
	identity *identity.Workload
	// destinations hears of connections to the destinations of a lazy
	// proxy's listeners (lazy.go); nil: not in lazy mode.
	destinations DestinationReporter
	// limits bound what peers can make the proxy hold; budget is the
	// shared bound on unfinished frames.
	limits Limits
	budget *wire.Budget
	// tracer makes the spans of listeners with tracing config; nil: none.
	tracer *tracing.Tracer
	// logs are the open access log destinations.
	logs *accesslog.Sinks
	// reporter is the reporter label of Istio's metrics (SetReporter).
	reporter string

	mu        sync.Mutex // serialises Apply and Shutdown
	listeners map[string]*listener
	closed    bool
	// hbone terminates HBONE once ListenHBONE was called; targets holds
	// the listeners in force by the HBONE destinations they serve.
	hbone   *hbone.Server
	targets atomic.Pointer[map[netip.AddrPort]*listener]
	// rls asks rate limit services about requests (globalratelimit.go).
	rls *rateLimitService
}

// New returns a proxy with no configuration.
func New(log *slog.Logger) *Proxy {
	if log == nil {
		log = slog.Default()
	}
	p := &Proxy{
		log:       log,
		metrics:   observability.New(),
		mgr:       upstream.NewManager(nil),
		listeners: map[string]*listener{},
		reporter:  observability.ReporterWaypoint,
	}
	p.rls = newRateLimitService(p.metrics.Registry)
	p.logs = accesslog.NewSinks(p.metrics.Registry)
	p.SetLimits(DefaultLimits())
	return p
}

// UseIdentity gives the proxy a workload identity for Istio mutual TLS. Call
// it before the first Apply.
func (p *Proxy) UseIdentity(w *identity.Workload) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.identity = w
	p.mgr = upstream.NewManager(w)
	p.mgr.SetReadLimits(p.upstreamLimits())
}

// Metrics returns the proxy's metrics.
func (p *Proxy) Metrics() *observability.Metrics { return p.metrics }

// Apply checks res and, when it is valid, makes it the configuration in force:
// new listeners open, removed ones drain, and open connections pick up the new
// routes and clusters with their next request. On error nothing changes and
// the error names the resource and field at fault (the xDS client NACKs with
// it).
func (p *Proxy) Apply(res config.Resources) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("proxy: shut down")
	}
	s, err := compile(res, p.mgr, p.identity, p.limits, p.budget)
	if err == nil {
		err = p.openLogs(s)
	}
	if err == nil {
		err = p.openListeners(s)
	}
	if err != nil {
		p.metrics.ConfigUpdate(false)
		return err
	}
	for name, c := range s.clusters {
		c.Active = p.metrics.UpstreamActive(name)
	}
	p.bindTracing(s)
	p.snap.Store(s)
	for name, l := range p.listeners {
		if lc, ok := s.listeners[name]; ok {
			l.cfg.Store(lc)
			continue
		}
		delete(p.listeners, name)
		go l.drain(context.Background(), 30*time.Second)
	}
	p.setTargets(s)
	p.mgr.Commit(s.clusters)
	p.metrics.ConfigUpdate(true)
	p.log.Info("config applied", "listeners", len(s.listeners), "routes", len(s.routes), "clusters", len(s.clusters))
	return nil
}

// openListeners binds the listeners s adds (or moves to a new address) before
// anything else changes, so a port in use fails the update as a whole.
func (p *Proxy) openListeners(s *snapshot) error {
	var opened []*listener
	for name, lc := range s.listeners {
		old := p.listeners[name]
		if old != nil && old.addr == lc.addr {
			continue
		}
		l, err := listen(p, lc)
		if err != nil {
			for _, o := range opened {
				o.closeListener()
			}
			return fmt.Errorf("listener %q: %w", name, err)
		}
		opened = append(opened, l)
	}
	for _, l := range opened {
		if old := p.listeners[l.name]; old != nil {
			go old.drain(context.Background(), 30*time.Second)
		}
		p.listeners[l.name] = l
		if l.ln != nil {
			go l.serve()
		}
	}
	return nil
}

// Ready reports whether a configuration is in force and its listeners are open.
func (p *Proxy) Ready() bool { return p.snap.Load() != nil }

// Addr returns the bound address of a listener (useful with port 0);
// false for a listener without an address, served only through HBONE.
func (p *Proxy) Addr(listener string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.listeners[listener]
	if !ok || l.ln == nil {
		return "", false
	}
	return l.ln.Addr().String(), true
}

// Shutdown stops accepting, lets requests in flight finish until ctx ends,
// then closes every connection. The HBONE server stops accepting and sends
// GOAWAY; its streams drain with their listeners' connections.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	ls := make([]*listener, 0, len(p.listeners))
	for _, l := range p.listeners {
		ls = append(ls, l)
	}
	p.listeners = map[string]*listener{}
	p.targets.Store(nil)
	hb := p.hbone
	p.mu.Unlock()
	var wg sync.WaitGroup
	if hb != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = hb.Shutdown(ctx)
		}()
	}
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.drain(ctx, 0)
		}()
	}
	wg.Wait()
	p.mgr.CloseAll()
	if err := p.rls.close(); err != nil {
		p.log.Warn("closing rate limit service connections", "err", err)
	}
	p.logs.Close()
	return ctx.Err()
}
