package proxy

// DestinationReporter is told of every connection to a listener that
// stands for a destination (the controller's LazyListener, sent to a proxy
// in lazy mode), so a lazy proxy can report the destinations its callers
// use (xds/client.Destinations). Opened and Closed come in pairs, from
// any goroutine.
type DestinationReporter interface {
	Opened(destination string)
	Closed(destination string)
}

// ReportDestinations sets who hears of the connections to listeners that
// stand for a destination. Call it before the first Apply.
func (p *Proxy) ReportDestinations(r DestinationReporter) { p.destinations = r }

// lazyOpened and lazyClosed tell the reporter of a connection to a
// destination; the listener config the connection was accepted with
// names it, so both name the same one.
func (dc *downConn) lazyOpened() {
	if r := dc.l.p.destinations; r != nil && dc.lc.lazyDest != "" {
		r.Opened(dc.lc.lazyDest)
	}
}

func (dc *downConn) lazyClosed() {
	if r := dc.l.p.destinations; r != nil && dc.lc.lazyDest != "" {
		r.Closed(dc.lc.lazyDest)
	}
}
