package proxy

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
	"github.com/rosetta-mesh/rosetta/pkg/observability"
	"github.com/rosetta-mesh/rosetta/pkg/router"
	"github.com/rosetta-mesh/rosetta/pkg/tracing"
	"github.com/rosetta-mesh/rosetta/pkg/upstream"
)

// exchange is one request from arrival to answer: routing, policy, the tries
// upstream, and the answer written back.
type exchange struct {
	p     *Proxy
	dc    *downConn
	req   *codec.Message
	snap  *snapshot
	slot  *slot
	start time.Time
	// slotBuf and first hold the slot and the first try, saving two
	// allocations per request.
	slotBuf slot
	first   attempt

	route   *router.Route
	cluster *upstream.Cluster
	hash    uint64
	// done, when set, receives the outcome instead of the downstream
	// connection (requests a codec's Handler sends).
	onDone codec.Done
	// fixed, when set, is the only endpoint to try.
	fixed *upstream.Endpoint
	// round is the reader's round that writes made while handling the
	// request on the reader goroutine join (see netloop.Round).
	round *netloop.Round
	// trace is the request's server span; nil when it is not traced.
	trace *tracing.Request
	// For the access log: the handler's env that sent the request (nil
	// for a client's) and the reason of an answer the proxy made.
	env    *env
	detail string

	// endpoint is the last try's; flag, when set, is the response flag
	// (istio.go) of a failure the status does not tell.
	endpoint *upstream.Endpoint
	flag     string

	mu       sync.Mutex
	done     bool
	try      *attempt
	tries    int
	deadline time.Time
	timer    *time.Timer
}

// attempt is one try on one endpoint; it is the upstream.Request the
// connection answers.
type attempt struct {
	ex    *exchange
	ep    *upstream.Endpoint
	conn  *upstream.Conn
	id    uint64
	retry bool // holds one of the cluster's retry slots
	span  tracing.Try
}

// end releases what the attempt holds once it is over.
func (a *attempt) end() {
	a.ep.End()
	if a.retry {
		a.ex.cluster.ReleaseRetry()
	}
}

func (a *attempt) Done(resp *codec.Message, err error, b *netloop.Round) {
	a.ex.attemptDone(a, resp, err, b)
}

// handle routes one request from dc. It runs on dc's reader goroutine and
// never blocks on the network.
func (p *Proxy) handle(dc *downConn, req *codec.Message, b *netloop.Round) {
	dc.inflight.Add(1)
	if eng := dc.l.cfg.Load().authz; !eng.Empty() {
		if d := dc.authorize(eng, req); !d.Allowed {
			ex := &exchange{p: p, dc: dc, req: req, snap: p.snap.Load(), start: b.Now(), round: b}
			ex.slot = dc.reserve(&ex.slotBuf)
			ex.local(codec.StatusUnauthorized, d.Reason)
			return
		}
	}
	if h, ok := dc.codec.(codec.Handler); ok {
		hc := &handled{env: env{dc: dc, snap: p.snap.Load(), round: b, start: b.Now()}, req: req}
		hc.env.spare = &hc.first
		hc.slot = dc.reserve(&hc.slotBuf)
		if dc.lc.tracing != nil {
			hc.startTrace()
		}
		h.Handle(req, &hc.env, hc)
		return
	}
	ex := &exchange{p: p, dc: dc, req: req, snap: p.snap.Load(), start: b.Now(), round: b}
	ex.slot = dc.reserve(&ex.slotBuf)
	ex.route = ex.match()
	if ex.dc.lc.tracing != nil {
		ex.startTrace()
	}
	ex.run()
}

// handled is a request a codec's Handler answers, in one allocation with
// what it needs.
type handled struct {
	env     env
	req     *codec.Message
	slot    *slot
	slotBuf slot
	first   exchange // env's spare
}

// Reply implements codec.Replier: the answer to the client's request.
func (hc *handled) Reply(m *codec.Message) {
	status := "ok"
	if m != nil && m.Status != codec.StatusOK {
		status = m.Status.String()
	}
	dc := hc.env.dc
	// The round's time is its owner's round now, and never before start,
	// which the same round gave.
	d := hc.env.round.Now().Sub(hc.env.start)
	dc.recordOperation(hc.req, status, d)
	hc.recordIstio(m, d)
	if hc.env.trace != nil {
		hc.endTrace(status)
	}
	hc.logReply(m, status, d)
	dc.respond(hc.slot, m, hc.env.round)
	dc.finished()
}

func (ex *exchange) match() *router.Route { return ex.dc.lc.match(ex.snap, ex.req) }

// run applies the route's policies and forwards the request.
func (ex *exchange) run() {
	if ex.route == nil {
		ex.local(codec.StatusNoRoute, "no route matched the request")
		return
	}
	if !ex.route.Action.AllowLocal(ex.req, ex.start) {
		ex.local(codec.StatusRateLimited, "rate limited by route "+ex.route.Name)
		return
	}
	if !ex.askRateLimitService() {
		ex.inject()
	}
}

// inject applies the route's fault injection and forwards the request.
func (ex *exchange) inject() {
	if f := ex.route.Action.Fault; f != nil {
		if f.AbortPercent > 0 && router.Chance(f.AbortPercent) {
			ex.flag = flagFaultAbort
			ex.local(f.Abort, "fault injected by route "+ex.route.Name)
			return
		}
		if f.Delay > 0 && router.Chance(f.DelayPercent) {
			ex.round = nil // the forward runs on a timer, not on the reader
			ex.flag = flagFaultDelay
			time.AfterFunc(f.Delay, ex.forward)
			return
		}
	}
	ex.forward()
}

// forward sends the request to the route's cluster.
func (ex *exchange) forward() {
	act := &ex.route.Action
	for _, kv := range act.RequestMutation {
		ex.req.Set(kv.Key, kv.Value)
	}
	name := act.PickCluster()
	if ex.cluster == nil {
		ex.cluster = ex.snap.clusters[name]
	}
	if ex.cluster == nil {
		ex.local(codec.StatusNoUpstream, fmt.Sprintf("cluster %q not found", name))
		return
	}
	ex.hash = hashOf(ex.req, act)
	ex.mirror(act.Mirrors)
	if ex.req.Kind == codec.KindOneway {
		ex.sendOneway()
		return
	}
	if !ex.cluster.Acquire() {
		ex.p.metrics.UpstreamError(ex.cluster.Name, "overloaded")
		ex.local(codec.StatusOverloaded, fmt.Sprintf("cluster %q has too many requests in flight", ex.cluster.Name))
		return
	}
	if act.Timeout > 0 {
		ex.deadline = ex.start.Add(act.Timeout)
	}
	ex.mu.Lock()
	defer ex.mu.Unlock()
	ex.startAttempt(nil, ex.round)
}

// hashOf is req's hash under the route's hash policy (0 without one), the
// route's mutations applied.
func hashOf(req *codec.Message, act *router.Action) uint64 {
	if len(act.HashAttributes) == 0 {
		return 0
	}
	var b strings.Builder
	for _, a := range act.HashAttributes {
		v, _ := req.Get(a)
		for _, kv := range act.RequestMutation {
			if kv.Key == a {
				v = kv.Value
			}
		}
		b.WriteString(v)
		b.WriteByte(0)
	}
	return upstream.HashString(b.String())
}

func (ex *exchange) pool(ep *upstream.Endpoint) *upstream.Pool {
	lc := ex.dc.lc
	key := lc.poolKey
	if pk, ok := ex.dc.codec.(codec.PoolKeyer); ok {
		key += "|" + pk.PoolKey(ex.req)
	}
	return ep.Pool(lc.protocol, lc.options, key)
}

// pick chooses the endpoint of a try, other than exclude: the fixed one,
// else one of the cluster the request was routed to. When a config update
// has removed all of that cluster's endpoints since (a request delayed by a
// fault, or retried, after the update), it is one of the cluster of the
// same name in the config in force: the request goes where new ones go,
// never to a removed endpoint.
func (ex *exchange) pick(exclude *upstream.Endpoint) *upstream.Endpoint {
	if ex.fixed != nil {
		return ex.fixed
	}
	if ep := ex.cluster.Pick(ex.hash, exclude); ep != nil {
		return ep
	}
	if now := ex.p.snap.Load(); now != nil && now != ex.snap {
		if cl := now.clusters[ex.cluster.Name]; cl != nil {
			return cl.Pick(ex.hash, exclude)
		}
	}
	return nil
}

func (ex *exchange) sendOneway() {
	ep := ex.pick(nil)
	if ep == nil {
		ex.local(codec.StatusNoUpstream, "no endpoint in cluster "+ex.cluster.Name)
		return
	}
	ex.endpoint = ep
	try := ex.traceOneway(ep)
	status, st := "ok", codec.StatusOK
	_, _, err := ex.pool(ep).Send(ex.cluster, ex.req, nil, ex.round)
	if err != nil {
		status, st, ex.flag = "upstream_error", codec.StatusNoUpstream, flagConnectFailure
	}
	try.End(nil, err)
	ex.record(status, nil, st, ex.round)
	ex.complete(nil, codec.StatusOK, "", ex.round)
}

// mirror sends copies to mirror clusters; their answers are dropped.
func (ex *exchange) mirror(ms []router.Mirror) {
	for _, m := range ms {
		cl := ex.snap.clusters[m.Cluster]
		if cl == nil || !router.Chance(m.Percent) {
			continue
		}
		ep := cl.Pick(ex.hash, nil)
		if ep == nil {
			continue
		}
		cp := *ex.req
		var r upstream.Request
		if cp.Kind != codec.KindOneway {
			r = discard{}
		}
		_, _, _ = ex.pool(ep).Send(cl, &cp, r, ex.round) // a mirror's failure is not the caller's
	}
}

type discard struct{}

func (discard) Done(*codec.Message, error, *netloop.Round) {}

// startAttempt tries an endpoint other than exclude; b is the calling
// goroutine's round, if it has one. ex.mu is held.
func (ex *exchange) startAttempt(exclude *upstream.Endpoint, b *netloop.Round) {
	ex.startTry(exclude, b, false)
}

// retryLocked tries again elsewhere if the cluster's retry budget allows;
// false when it does not. ex.mu is held.
func (ex *exchange) retryLocked(exclude *upstream.Endpoint, b *netloop.Round) bool {
	if !ex.cluster.AcquireRetry() {
		ex.p.metrics.UpstreamError(ex.cluster.Name, "retry_overflow")
		return false
	}
	ex.startTry(exclude, b, true)
	return true
}

func (ex *exchange) startTry(exclude *upstream.Endpoint, b *netloop.Round, retry bool) {
	ex.tries++
	ep := ex.pick(exclude)
	if ep == nil {
		if retry {
			ex.cluster.ReleaseRetry()
		}
		ex.finishLocked(nil, codec.StatusNoUpstream, "no healthy endpoint in cluster "+ex.cluster.Name, b)
		return
	}
	a := &ex.first
	if ex.tries > 1 {
		a = &attempt{}
	}
	*a = attempt{ex: ex, ep: ep, retry: retry}
	ex.try, ex.endpoint = a, ep
	ex.armTimer(a)
	if ex.trace != nil {
		ex.traceTry(a)
	}
	ep.Begin()
	conn, id, err := ex.pool(ep).Send(ex.cluster, ex.req, a, b)
	if err != nil {
		ex.try = nil
		a.end()
		a.span.End(nil, err)
		ex.failedLocked(a, err, b)
		return
	}
	a.conn, a.id = conn, id
}

func (ex *exchange) armTimer(a *attempt) {
	d := ex.route.Action.Retry.PerTryTimeout
	if !ex.deadline.IsZero() {
		left := time.Until(ex.deadline)
		if d <= 0 || left < d {
			d = left
		}
	}
	if ex.timer != nil {
		ex.timer.Stop()
		ex.timer = nil
	}
	if d > 0 {
		ex.timer = time.AfterFunc(d, func() { ex.timedOut(a) })
	} else if !ex.deadline.IsZero() {
		ex.timer = time.AfterFunc(0, func() { ex.timedOut(a) })
	}
}

func (ex *exchange) attemptDone(a *attempt, resp *codec.Message, err error, b *netloop.Round) {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.done || ex.try != a {
		return // an abandoned try answered late
	}
	a.end()
	a.span.End(resp, err)
	ex.try = nil
	if err != nil {
		ex.failedLocked(a, err, b)
		return
	}
	a.ep.Answered(resp.Status != codec.StatusOK)
	if ex.req.OpensStream && resp.Status == codec.StatusOK {
		ex.dc.openStream(ex.req, a.conn, a.id)
	}
	ex.finishLocked(resp, resp.Status, "", b)
}

// failedLocked retries a failed try when the route allows it, and answers
// with the matching error otherwise. A connect failure is always tried once
// more elsewhere: the request never reached a server, so that is safe.
func (ex *exchange) failedLocked(a *attempt, err error, b *netloop.Round) {
	retry := ex.route.Action.Retry
	var st codec.Status
	var may bool
	switch {
	case errors.Is(err, upstream.ErrConnect):
		st, may = codec.StatusNoUpstream, true
		ex.p.metrics.UpstreamError(ex.cluster.Name, "connect")
		ex.flag = flagConnectFailure
	case errors.Is(err, upstream.ErrReset):
		st, may = codec.StatusUpstreamReset, retry.On&router.RetryReset != 0
		ex.p.metrics.UpstreamError(ex.cluster.Name, "reset")
	case errors.Is(err, upstream.ErrOverloaded): // this endpoint is unavailable; another may not be
		st, may = codec.StatusOverloaded, retry.On&router.RetryUnavailable != 0
		ex.p.metrics.UpstreamError(ex.cluster.Name, "overloaded")
	default:
		st = codec.StatusBadRequest
	}
	connect := errors.Is(err, upstream.ErrConnect)
	budget := 1 + retry.Attempts
	if connect {
		budget = max(budget, 2)
	}
	if may && ex.tries < budget && !ex.pastDeadline() {
		if connect { // never sent: outside the cluster's retry budget
			ex.startAttempt(a.ep, b)
			return
		}
		if ex.retryLocked(a.ep, b) {
			return
		}
	}
	ex.finishLocked(nil, st, err.Error(), b)
}

func (ex *exchange) pastDeadline() bool {
	return !ex.deadline.IsZero() && !time.Now().Before(ex.deadline)
}

func (ex *exchange) timedOut(a *attempt) {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.done || ex.try != a {
		return
	}
	ex.try = nil
	a.end()
	a.span.End(nil, errTryTimeout)
	if a.conn != nil {
		a.conn.Cancel(a.id)
	}
	ex.p.metrics.UpstreamError(ex.cluster.Name, "timeout")
	retry := ex.route.Action.Retry
	if retry.On&router.RetryTimeout != 0 && ex.tries < 1+retry.Attempts && !ex.pastDeadline() && ex.retryLocked(a.ep, nil) {
		return
	}
	ex.finishLocked(nil, codec.StatusTimeout, "upstream did not answer in time", nil)
}

// finishLocked answers the request with resp, or with a local reply for st
// when resp is nil; b is the calling goroutine's round, if any. ex.mu is held.
func (ex *exchange) finishLocked(resp *codec.Message, st codec.Status, detail string, b *netloop.Round) {
	ex.done = true
	if ex.timer != nil {
		ex.timer.Stop()
	}
	ex.cluster.Release()
	if resp == nil {
		ex.localWith(st, detail, b)
		return
	}
	resp.ID = ex.req.ID
	for _, kv := range ex.route.Action.ResponseMutation {
		resp.Set(kv.Key, kv.Value)
	}
	ex.record(st.String(), resp, st, b)
	ex.complete(resp, st, "", b)
}

// local answers with the codec's reply for st, on the reader goroutine.
func (ex *exchange) local(st codec.Status, detail string) { ex.localWith(st, detail, ex.round) }

func (ex *exchange) localWith(st codec.Status, detail string, b *netloop.Round) {
	ex.detail = detail
	ex.record(st.String(), nil, st, b)
	ex.complete(nil, st, "rosetta: "+detail, b)
}

// complete hands the outcome to whoever waits for it: a Handler's callback,
// or the downstream connection (resp nil and a non-OK status: a local reply).
func (ex *exchange) complete(resp *codec.Message, st codec.Status, detail string, b *netloop.Round) {
	if ex.onDone != nil {
		ex.dc.hold(b) // the handler's answer, if it writes one now, joins b
		ex.onDone(resp, st, detail)
		return
	}
	switch {
	case resp != nil:
		ex.dc.respond(ex.slot, resp, b)
	case st != codec.StatusOK:
		ex.dc.reply(ex.slot, ex.req, st, detail, b)
	default:
		ex.dc.respond(ex.slot, nil, b)
	}
	ex.dc.finished()
}

// record counts the request, which ended with resp (nil: a local reply
// for st); b, the round of the round that ends it, gives the time.
func (ex *exchange) record(status string, resp *codec.Message, st codec.Status, b *netloop.Round) {
	route, cluster := "", ""
	if ex.route != nil {
		route = ex.route.Name
	}
	if ex.cluster != nil {
		cluster = ex.cluster.Name
	}
	// Round times of two loops may be out of order by up to a round.
	d := max(b.Now().Sub(ex.start), 0)
	if lg := ex.dc.l.cfg.Load().accessLog; lg != nil {
		ex.logAccess(lg, status, resp, st, d)
	}
	if status == "ok" {
		ex.dc.series(&ex.dc.lastRequest, route, cluster, func() *observability.Series {
			return ex.p.metrics.RequestSeries(ex.dc.lc.statPrefix, route, cluster)
		}).Observe(d)
	} else {
		ex.p.metrics.Request(ex.dc.lc.statPrefix, route, cluster, status, d)
	}
	if ex.env != nil {
		// A handler's request: its client's request is counted and its
		// server span ended when the handler replies, with this one's
		// destination.
		ex.env.sent.Store(ex)
		return
	}
	if ex.trace != nil {
		ex.endTrace(status)
	}
	ex.dc.recordOperation(ex.req, status, d)
	ex.recordIstio(resp, st, d)
}

// recordOperation counts a client's request under the protocol's operation
// name (its MetricAttribute), when the protocol names one.
func (dc *downConn) recordOperation(req *codec.Message, status string, d time.Duration) {
	attr := dc.lc.protocol.MetricAttribute
	if attr == "" {
		return
	}
	op, ok := req.Get(attr)
	if !ok {
		op = "unknown"
	}
	m := dc.l.p.metrics
	if status == "ok" {
		if s := dc.series(&dc.lastOperation, op, "", func() *observability.Series { return m.OperationSeries(dc.lc.statPrefix, op) }); s != nil {
			s.Observe(d)
			return
		}
	}
	m.Operation(dc.lc.statPrefix, op, status, d)
}

// series is the metric series of labels (dc's listener, a, b): last's, when
// it is that one, else what find returns, which last then keeps.
func (dc *downConn) series(last *atomic.Pointer[observability.Series], a, b string, find func() *observability.Series) *observability.Series {
	if s := last.Load(); s != nil && s.Is(dc.lc.statPrefix, a, b) {
		return s
	}
	s := find()
	if s != nil {
		last.Store(s)
	}
	return s
}
