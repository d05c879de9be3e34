package proxy

import (
	"errors"
	"fmt"
	"time"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/tracing"
	"github.com/rosetta-mesh/rosetta/pkg/upstream"
)

// errTryTimeout ends the span of a try that got no answer in time.
var errTryTimeout = errors.New("upstream did not answer in time")

// UseTracer gives the proxy the Tracer that listeners with tracing config
// make spans with. Without one such listeners make none. Call it before
// the first Apply.
func (p *Proxy) UseTracer(t *tracing.Tracer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tracer = t
}

// compileTracing reads a listener's tracing config; nil when it has none.
func compileTracing(mp *configv1alpha1.MetaProtocolProxy) (*tracing.Listener, error) {
	t := mp.GetTracing()
	if t == nil {
		return nil, nil
	}
	l, err := tracing.NewListener(t.GetRandomSamplingPercentage(), t.GetIgnoreCallerSampling())
	if err != nil {
		return nil, fmt.Errorf("filter %s: tracing.%w", config.FilterName, err)
	}
	return l, nil
}

// bindTracing gives the traced listeners of s the proxy's Tracer. p.mu is
// held.
func (p *Proxy) bindTracing(s *snapshot) {
	for name, lc := range s.listeners {
		if lc.tracing == nil {
			continue
		}
		if p.tracer == nil {
			p.log.Warn("listener asks for tracing but the proxy has no OTLP endpoint (--otlp-endpoint): no spans", "listener", name)
		}
		lc.tracing.Bind(p.tracer)
	}
}

// startTrace decides whether the request is traced and starts its server
// span. The caller checked that the listener traces. The span's names are
// gathered only for a request sampled in: a sampled-out one costs the
// sampling decision alone.
func (ex *exchange) startTrace() {
	lc := ex.dc.lc
	tc, carrier := ex.dc.codec.(codec.TraceCarrier)
	if !lc.tracing.Sample(ex.req, carrier) {
		return
	}
	in := tracing.Info{System: lc.protocol.Name, Listener: lc.name, Start: ex.start}
	if carrier {
		in.Service, in.Method, in.Carries = tc.TraceInfo(ex.req)
	} else if attr := lc.protocol.MetricAttribute; attr != "" {
		in.Method, _ = ex.req.Get(attr)
	}
	if ex.route != nil {
		in.Route = ex.route.Name
	}
	ex.trace = lc.tracing.Start(ex.req, in)
}

// traceTry starts a's client span and writes its context into the request.
func (ex *exchange) traceTry(a *attempt) {
	a.span = ex.trace.StartTry(ex.req, ex.cluster.Name, a.ep.Addr, ex.tries)
}

// traceOneway is the client span of a oneway request sent to ep; the
// zero Try when the request is not traced.
func (ex *exchange) traceOneway(ep *upstream.Endpoint) tracing.Try {
	if ex.trace == nil {
		return tracing.Try{}
	}
	return ex.trace.StartTry(ex.req, ex.cluster.Name, ep.Addr, 1)
}

// endTrace ends the server span with the request's outcome, at the wall
// clock's now (a round's time may be behind its try's end).
func (ex *exchange) endTrace(status string) {
	cluster := ""
	if ex.cluster != nil {
		cluster = ex.cluster.Name
	}
	ex.trace.End(cluster, status, max(ex.tries-1, 0), time.Now())
}

// startTrace decides whether a request a codec's Handler answers is traced
// and starts its server span; the requests the handler sends are its
// client spans. Redis carries no trace context: the listener's percentage
// alone decides.
func (hc *handled) startTrace() {
	dc := hc.env.dc
	lc := dc.lc
	tc, carrier := dc.codec.(codec.TraceCarrier)
	if !lc.tracing.Sample(hc.req, carrier) {
		return
	}
	in := tracing.Info{System: lc.protocol.Name, Listener: lc.name, Start: hc.env.start}
	if carrier {
		in.Service, in.Method, in.Carries = tc.TraceInfo(hc.req)
	} else if attr := lc.protocol.MetricAttribute; attr != "" {
		in.Method, _ = hc.req.Get(attr)
	}
	hc.env.trace = lc.tracing.Start(hc.req, in)
}

// endTrace ends a handled request's server span, naming the route and
// cluster of the last request the handler sent for it.
func (hc *handled) endTrace(status string) {
	cluster, tries := "", 0
	if ex := hc.env.sent.Load(); ex != nil {
		if ex.cluster != nil {
			cluster = ex.cluster.Name
		}
		if ex.route != nil {
			hc.env.trace.SetRoute(ex.route.Name)
		}
		tries = ex.tries
	}
	hc.env.trace.End(cluster, status, max(tries-1, 0), time.Now())
}
