package proxy

import (
	"net"
	"net/netip"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/observability"
	"github.com/rosetta-mesh/rosetta/pkg/upstream"
)

// Envoy's response flags (what Istio's response_flags label shows) for the
// failures the proxy itself sees; "-" is none. docs/observability.md has
// the map.
const (
	flagNone           = "-"
	flagNoRoute        = "NR"     // no route matched
	flagNoHealthy      = "UH"     // no healthy endpoint in the cluster
	flagConnectFailure = "UF"     // the upstream connection could not be made
	flagOverflow       = "UO"     // a circuit breaker (request or pending limit) refused
	flagTimeout        = "UT"     // the route's or a try's timeout expired
	flagReset          = "UC"     // the upstream connection closed with the request in flight
	flagRetryExhausted = "URX"    // every try failed and retries are spent
	flagRateLimited    = "RL"     // a local rate limit refused
	flagFaultAbort     = "FI"     // an injected fault aborted the request
	flagFaultDelay     = "DI"     // an injected fault delayed the request
	flagDownstreamErr  = "DPE"    // the caller's request could not be handled (bad request)
	flagUnauthorized   = flagNone // an authorization policy denied: Envoy's RBAC filter sets no flag either
)

// statusFlags is the response flag of a local reply for its status; a
// failure the exchange saw more precisely (a connect failure, a fault)
// sets exchange.flag instead.
var statusFlags = [...]string{
	codec.StatusOK:            flagNone,
	codec.StatusNoRoute:       flagNoRoute,
	codec.StatusNoUpstream:    flagNoHealthy,
	codec.StatusTimeout:       flagTimeout,
	codec.StatusOverloaded:    flagOverflow,
	codec.StatusRateLimited:   flagRateLimited,
	codec.StatusUpstreamReset: flagReset,
	codec.StatusBadRequest:    flagDownstreamErr,
	codec.StatusUnauthorized:  flagUnauthorized,
	codec.StatusFault:         flagFaultAbort,
	codec.StatusError:         flagNone,
}

// responseFlags is the response_flags of an exchange that ended with st;
// resp is nil for a local reply.
func (ex *exchange) responseFlags(resp *codec.Message, st codec.Status) string {
	switch {
	case ex.flag == flagFaultAbort || ex.flag == flagFaultDelay:
		return ex.flag
	case resp != nil:
		return flagNone // the upstream answered, with success or its own error
	case ex.flag != "":
		return ex.flag // a connect failure, the last try's or the only one
	case ex.tries > 1 && st != codec.StatusOK:
		return flagRetryExhausted
	case int(st) < len(statusFlags):
		return statusFlags[st]
	}
	return flagNone
}

// recordIstio counts the exchange in Istio's metrics; resp is the answer
// (nil: a local reply for st).
func (ex *exchange) recordIstio(resp *codec.Message, st codec.Status, d time.Duration) {
	m := ex.p.metrics
	if !m.IstioEnabled() {
		return
	}
	svc, dst := observability.UnknownService, observability.UnknownWorkload
	if ex.cluster != nil {
		svc = ex.cluster.Service
		if ex.endpoint != nil {
			dst = ex.cluster.Workload(ex.endpoint)
		}
	}
	respBytes := 0
	if resp != nil {
		respBytes = len(resp.Raw)
	}
	ex.dc.istio(svc, dst, codec.ResponseCode(ex.dc.codec, resp, st), ex.responseFlags(resp, st), d, len(ex.req.Raw), respBytes)
}

// istio records one request of the connection in Istio's metrics, in the
// series the connection used last when the labels are the same values.
func (dc *downConn) istio(svc *observability.Service, dst *observability.Workload, code, flags string, d time.Duration, reqBytes, respBytes int) {
	l := observability.IstioLabels{
		Reporter:    dc.l.p.reporter,
		Protocol:    dc.lc.protocol.Name,
		Source:      dc.source,
		Service:     svc,
		Destination: dst,
		Code:        code,
		Flags:       flags,
	}
	s := dc.lastIstio.Load()
	if !s.Is(&l) {
		if s = dc.l.p.metrics.IstioSeries(&l); s == nil {
			return
		}
		dc.lastIstio.Store(s)
	}
	s.Observe(d, reqBytes, respBytes)
}

// recordIstio counts a request a codec's Handler answered with m (nil:
// none) in Istio's metrics. Its destination is that of the last request the
// handler sent for it (a command split across shards: the last part to
// end); one the handler answered itself (PING, AUTH) has none.
func (hc *handled) recordIstio(m *codec.Message, d time.Duration) {
	dc := hc.env.dc
	if !dc.l.p.metrics.IstioEnabled() {
		return
	}
	st, n := codec.StatusOK, 0
	if m != nil {
		st, n = m.Status, len(m.Raw)
	}
	svc, dst := observability.UnknownService, observability.UnknownWorkload
	if ex := hc.env.sent.Load(); ex != nil && ex.cluster != nil {
		svc = ex.cluster.Service
		if ex.endpoint != nil {
			dst = ex.cluster.Workload(ex.endpoint)
		}
	}
	// A handler's answers are the server's or its own local errors, which
	// it does not tell apart: no flags.
	dc.istio(svc, dst, codec.ResponseCode(dc.codec, m, st), flagNone, d, len(hc.req.Raw), n)
}

// tcpProtocol is request_protocol on the connection metrics, as Istio
// labels TCP traffic.
const tcpProtocol = "tcp"

// connectionOpened and connectionClosed count the connection in Istio's
// TCP metrics.
func (dc *downConn) connectionOpened() {
	dc.l.p.metrics.IstioConnection(dc.l.p.reporter, tcpProtocol, dc.source, true)
}

func (dc *downConn) connectionClosed() {
	dc.l.p.metrics.IstioConnection(dc.l.p.reporter, tcpProtocol, dc.source, false)
}

// SetReporter sets the reporter label of Istio's metrics: waypoint (a
// waypoint or gateway, the default), source (a sidecar on the caller's
// side) or destination (one on the server's side). Call it before the
// first Apply.
func (p *Proxy) SetReporter(r string) { p.reporter = r }

// callers are the workloads of a snapshot's endpoints by address: a caller
// whose address is an endpoint's is taken for that endpoint's workload, as
// Istio's waypoints learn a caller's workload from its address (ztunnel's
// workload discovery). An address that two workloads share (pods on the
// host network) names neither.
type callers map[netip.Addr]*observability.Workload

// indexCallers indexes the workloads the clusters' endpoints name.
func indexCallers(clusters map[string]*upstream.Cluster) callers {
	idx := callers{}
	for _, c := range clusters {
		c.Workloads(func(e *upstream.Endpoint, w *observability.Workload) {
			ap, err := netip.ParseAddrPort(e.Addr)
			if err != nil {
				return // a host name: no caller's address
			}
			ip := ap.Addr().Unmap()
			if old, seen := idx[ip]; seen && (old == nil || *old != *w) {
				idx[ip] = nil
				return
			}
			idx[ip] = w
		})
	}
	return idx
}

// source is what Istio's source labels say of a caller at addr whose
// verified identity is principal ("" for plaintext). The identity decides
// the principal and namespace; the address adds the workload's name, app
// and version when its endpoint's workload agrees with the identity (the
// same principal, or the same namespace when the endpoint names none).
// Without an identity the address's workload is taken, and the principal
// stays unknown: an address is not an identity.
func (c callers) source(addr netip.Addr, principal string) *observability.Workload {
	id := observability.WorkloadOfPrincipal(principal)
	w := c[addr]
	switch {
	case w == nil:
		return id
	case principal != "" && w.Principal != observability.Unknown && w.Principal != id.Principal:
		return id
	case principal != "" && w.Namespace != id.Namespace:
		return id
	}
	src := *w
	src.Principal = id.Principal
	return &src
}

// callerAddr is the caller's address: for an HBONE stream the client it
// tunnels for (its Forwarded header), else the connection's far end.
func callerAddr(nc net.Conn) netip.Addr {
	if s, ok := nc.(interface{ Source() netip.Addr }); ok && s.Source().IsValid() {
		return s.Source()
	}
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// sourceOf is the source workload of a connection from nc, in the config
// in force.
func (p *Proxy) sourceOf(nc net.Conn, principal string) *observability.Workload {
	s := p.snap.Load()
	if s == nil {
		return observability.WorkloadOfPrincipal(principal)
	}
	return s.callers.source(callerAddr(nc), principal)
}
