package upstream

import (
	"sync"
	"time"
)

// ejectionGroup is the endpoints of one cluster, which share its
// max_ejection_percent.
type ejectionGroup struct {
	// mu makes the count and the ejection one step, so two endpoints
	// failing at once cannot both take the last allowed ejection.
	mu         sync.Mutex
	endpoints  []*Endpoint
	maxPercent int
}

// eject ejects e until the time ejectUntil returns, unless that would eject
// more than maxPercent of the group's endpoints. As in Envoy, an endpoint
// is always ejected when no other one is, whatever the percentage, and one
// already ejected may be ejected again.
func (g *ejectionGroup) eject(e *Endpoint, until int64, now time.Time) bool {
	if g == nil {
		e.ejectedUntil.Store(until)
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	others := 0
	for _, o := range g.endpoints {
		if o != e && !o.healthyAt(now) {
			others++
		}
	}
	if others > 0 && e.healthyAt(now) && 100*(others+1) > g.maxPercent*len(g.endpoints) {
		return false
	}
	e.ejectedUntil.Store(until)
	return true
}

// ejectionEnd is when an ejection that starts at now, for d, ends. With an
// interval, ejected endpoints come back at the sweep after their time is
// up, as Envoy's are: sweeps run every interval from the ejection, so it
// lasts a whole number of intervals.
func ejectionEnd(now time.Time, d, interval time.Duration) time.Time {
	if interval > 0 {
		d = (d + interval - 1) / interval * interval
	}
	return now.Add(d)
}

// healthyIntervals is how many whole intervals an endpoint has been back
// since its last ejection ended at until (Unix nanoseconds); each lowers
// the backoff of its next ejection by one step, as Envoy lowers its
// ejection multiplier for every interval a host stays healthy.
func healthyIntervals(until int64, now time.Time, interval time.Duration) int {
	if interval <= 0 || until == 0 || now.UnixNano() < until {
		return 0
	}
	return int(time.Duration(now.UnixNano()-until) / interval)
}
