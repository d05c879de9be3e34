package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/rosetta-mesh/rosetta/pkg/hbone"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
)

// ErrHBONENeedsIdentity: HBONE is Istio mutual TLS, which the proxy cannot
// terminate without a workload identity.
var ErrHBONENeedsIdentity = errors.New("proxy: HBONE needs a workload identity (start rosetta-proxy with --identity istiod or files)")

// ListenHBONE terminates HBONE (Istio ambient's tunnel to a waypoint) on
// addr, ":15008" in a mesh, until Shutdown; it returns the bound address.
// Each CONNECT stream is served by the listener whose filter lists its
// destination in authorities, as a connection of that listener (limits,
// routes and authorization alike, the caller's SPIFFE identity as its
// principal). Call it after UseIdentity: the server presents the workload
// certificate and requires the caller's, verified against the mesh roots.
func (p *Proxy) ListenHBONE(addr string) (net.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return nil, errors.New("proxy: shut down")
	case p.identity == nil:
		return nil, ErrHBONENeedsIdentity
	case p.hbone != nil:
		return nil, errors.New("proxy: HBONE is served already")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: HBONE: %w", err)
	}
	lim := hbone.DefaultLimits()
	lim.MaxConnections = p.limits.MaxConnections
	lim.IdleTimeout = p.limits.IdleTimeout
	lim.WriteTimeout = writeTimeout
	srv := &hbone.Server{
		TLS:     hbone.ServerTLS(identity.ServerConfig(p.identity)),
		Open:    p.openHBONE,
		Limits:  lim,
		Metrics: hbone.NewMetrics(p.metrics.Registry),
		Log:     p.log,
	}
	p.hbone = srv
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, hbone.ErrServerClosed) {
			p.log.Error("HBONE server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	p.log.Info("terminating HBONE", "addr", ln.Addr().String())
	return ln.Addr(), nil
}

// openHBONE finds the listener that serves a stream's destination, in the
// config in force.
func (p *Proxy) openHBONE(r hbone.Request) (func(net.Conn), string) {
	var l *listener
	if t := p.targets.Load(); t != nil {
		l = (*t)[r.Destination]
	}
	if l == nil {
		return nil, hbone.RefusedUnknownAuthority
	}
	lc := l.cfg.Load()
	if !l.admit(lc) {
		p.metrics.Refused(lc.statPrefix)
		return nil, hbone.RefusedMaxConnections
	}
	return func(nc net.Conn) { l.serveConn(nc, r.Principal, "hbone") }, ""
}

// setTargets indexes the listeners in force by their HBONE destinations.
// Callers hold p.mu.
func (p *Proxy) setTargets(s *snapshot) {
	t := make(map[netip.AddrPort]*listener, len(s.authorities))
	for a, name := range s.authorities {
		t[a] = p.listeners[name]
	}
	p.targets.Store(&t)
	if p.hbone == nil {
		for name, lc := range s.listeners {
			if lc.addr == "" {
				p.log.Warn("a listener without an address is served only through HBONE, which this proxy does not terminate (--hbone-address)", "listener", name)
			}
		}
	}
}
