package proxy

import (
	"fmt"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/accesslog"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// serviceAttribute names, per protocol, the attribute an access log shows
// as the service; the method is the protocol's MetricAttribute. A protocol
// not listed logs no service.
var serviceAttribute = map[string]string{
	"dubbo":  "interface",
	"thrift": "service",
	"trpc":   "callee",
}

// traceparentAttribute is the W3C trace context a request may carry (a
// Dubbo attachment, a tRPC trans_info key, a THeader header).
const traceparentAttribute = "traceparent"

// openLogs gives each of s's listeners that asks for access logs its
// logger, opening destinations not yet open; an error names the listener.
func (p *Proxy) openLogs(s *snapshot) error {
	for name, lc := range s.listeners {
		if lc.accessLogConfig == nil {
			continue
		}
		lg, err := p.logs.Logger(lc.accessLogConfig)
		if err != nil {
			return fmt.Errorf("listener %q: filter %s: access_log.%w", name, config.FilterName, err)
		}
		lc.accessLog = lg
	}
	return nil
}

// logAccess writes the access log line of a request that ended with
// status after d. Only called when the listener logs.
func (ex *exchange) logAccess(lg *accesslog.Logger, status string, resp *codec.Message, st codec.Status, d time.Duration) {
	if ex.env != nil { // a Handler's request: its client's request is logged, when the handler replies
		ex.env.note(ex)
		return
	}
	if !lg.Sample() {
		return
	}
	dc := ex.dc
	e := dc.entry(ex.req, ex.start, status, d)
	if ex.route != nil {
		e.Route = ex.route.Name
	}
	if ex.cluster != nil {
		e.Cluster = ex.cluster.Name
	}
	if ex.endpoint != nil {
		e.Upstream = ex.endpoint.Addr
	}
	e.Tries = ex.tries
	e.Detail = ex.detail
	e.ResponseCode = codec.ResponseCode(dc.codec, resp, st)
	if resp != nil {
		e.ResponseBytes = len(resp.Raw)
	}
	lg.Log(&e)
}

// entry is what a line says of req on dc whatever answered it.
func (dc *downConn) entry(req *codec.Message, start time.Time, status string, d time.Duration) accesslog.Entry {
	proto := dc.lc.protocol
	e := accesslog.Entry{
		Start:        start,
		Listener:     dc.l.name,
		Protocol:     proto.Name,
		Status:       status,
		ResponseCode: status,
		Duration:     d,
		RequestBytes: len(req.Raw),
		Caller:       dc.peer.Principal,
		Downstream:   dc.nc.RemoteAddr().String(),
	}
	if a := serviceAttribute[proto.Name]; a != "" {
		e.Service, _ = req.Get(a)
	}
	if a := proto.MetricAttribute; a != "" {
		e.Method, _ = req.Get(a)
	}
	if tp, ok := req.Get(traceparentAttribute); ok {
		e.TraceID = accesslog.TraceIDOf(tp)
	}
	return e
}

// handlerLog is what the requests a Handler sends for a client's request
// tell its access log line: the route, cluster and endpoint of the last
// one to end (a request split across shards names one of them) and the
// tries of all. env.logMu guards it.
type handlerLog struct {
	route    string
	cluster  string
	upstream string
	tries    int
}

// note records a request the handler sent, once it ended.
func (e *env) note(ex *exchange) {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	if e.log == nil {
		e.log = &handlerLog{}
	}
	if ex.route != nil {
		e.log.route = ex.route.Name
	}
	if ex.cluster != nil {
		e.log.cluster = ex.cluster.Name
	}
	if ex.endpoint != nil {
		e.log.upstream = ex.endpoint.Addr
	}
	e.log.tries += ex.tries
}

// logReply writes the access log line of a request a Handler answered
// with m.
func (hc *handled) logReply(m *codec.Message, status string, d time.Duration) {
	lg := hc.env.dc.l.cfg.Load().accessLog
	if lg == nil || !lg.Sample() {
		return
	}
	e := hc.env.dc.entry(hc.req, hc.env.start, status, d)
	if m != nil {
		e.ResponseBytes = len(m.Raw)
		e.ResponseCode = codec.ResponseCode(hc.env.dc.codec, m, m.Status)
	}
	hc.env.logMu.Lock()
	if l := hc.env.log; l != nil {
		e.Route, e.Cluster, e.Upstream, e.Tries = l.route, l.cluster, l.upstream, l.tries
	}
	hc.env.logMu.Unlock()
	lg.Log(&e)
}
