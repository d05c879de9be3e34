package proxy

// DestinationReporter is told which destinations a proxy's callers use:
// Opened when a connection to a listener that stands for a destination
// (the controller's LazyListener, sent to a proxy in lazy mode) carries
// its first request, Closed when that connection ends. A lazy proxy
// reports them to the controller (xds/client.Destinations). Opened and
// Closed come in pairs, from any goroutine.
type DestinationReporter interface {
	Opened(destination string)
	Closed(destination string)
}

// ReportDestinations sets who hears of the destinations callers use.
// Call it before the first Apply.
func (p *Proxy) ReportDestinations(r DestinationReporter) { p.destinations = r }

// Where a connection is in reporting its destination.
const (
	lazyUnused uint32 = iota
	lazyReported
	lazyDone
)

// lazyUsed reports the connection's destination at its first request:
// the request itself is routed with the config in force, through the
// fallback when the destination is new, and the controller's answer
// serves the ones after. A connection that carries no request (a probe,
// heartbeats only) reports nothing. After the first, a request costs
// one atomic load.
func (dc *downConn) lazyUsed() {
	if dc.lazy.Load() != lazyUnused {
		return
	}
	r := dc.l.p.destinations
	if r == nil || dc.lc.lazyDest == "" {
		dc.lazy.Store(lazyDone) // nothing to report, ever
		return
	}
	dc.lazyMu.Lock()
	defer dc.lazyMu.Unlock()
	if dc.lazy.Load() == lazyUnused {
		dc.lazy.Store(lazyReported)
		r.Opened(dc.lc.lazyDest)
	}
}

// lazyDone ends the connection's use of its destination, if it reported
// one. The listener config the connection was accepted with names it, so
// both name the same.
func (dc *downConn) lazyDone() {
	dc.lazyMu.Lock()
	defer dc.lazyMu.Unlock()
	if dc.lazy.Swap(lazyDone) == lazyReported {
		dc.l.p.destinations.Closed(dc.lc.lazyDest)
	}
}
