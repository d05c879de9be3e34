package proxy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
	"github.com/rosetta-mesh/rosetta/pkg/router"
	"github.com/rosetta-mesh/rosetta/pkg/tracing"
	"github.com/rosetta-mesh/rosetta/pkg/upstream"
)

// env is the codec.Upstream a Handler gets: the snapshot in force when the
// request arrived, seen from its downstream connection.
type env struct {
	dc   *downConn
	snap *snapshot
	// round is the reader's round; a call made after the reader moved on
	// finds it closed and writes at once (see netloop.Round).
	round *netloop.Round
	// start is when the client's request arrived; the requests the handler
	// sends for it are timed from then.
	start time.Time
	// spare, until spareTaken, is memory for the first request the handler
	// sends, which shares the allocation of the client's request (most
	// requests send exactly one). spareTaken is atomic: a handler may send
	// from callbacks that run on several goroutines. spare is set before
	// the env is shared, with a plain store.
	spare      *exchange
	spareTaken atomic.Bool
	// log gathers, for the access log, what the requests sent say.
	logMu sync.Mutex
	log   *handlerLog
	// trace is the client's request's server span (nil: not traced); the
	// requests the handler sends are its client spans.
	trace *tracing.Request
	// sent is the request the handler sent that ended last: its cluster
	// and endpoint are the destination of Istio's labels and the span.
	sent atomic.Pointer[exchange]
}

var _ codec.Upstream = (*env)(nil)

func (e *env) exchange(req *codec.Message, done codec.Done) *exchange {
	var ex *exchange
	if e.spare != nil && !e.spareTaken.Swap(true) {
		ex = e.spare
	} else {
		ex = &exchange{}
	}
	*ex = exchange{p: e.dc.l.p, dc: e.dc, req: req, snap: e.snap, start: e.start, onDone: done, round: e.round, env: e, trace: e.trace}
	return ex
}

// Forward implements codec.Upstream.
func (e *env) Forward(req *codec.Message, done codec.Done) {
	ex := e.exchange(req, done)
	ex.route = ex.match()
	ex.run()
}

// Route implements codec.Upstream.
func (e *env) Route(req *codec.Message) (string, string, bool) {
	r := e.dc.lc.match(e.snap, req)
	if r == nil {
		return "", "", false
	}
	return r.Action.PickCluster(), r.Name, true
}

// Pick implements codec.Upstream.
func (e *env) Pick(req *codec.Message) (codec.Choice, bool) {
	r := e.dc.lc.match(e.snap, req)
	if r == nil {
		return codec.Choice{}, false
	}
	cl := e.snap.clusters[r.Action.PickCluster()]
	if cl == nil {
		return codec.Choice{}, false
	}
	ep := cl.Pick(hashOf(req, &r.Action), nil)
	if ep == nil {
		return codec.Choice{}, false
	}
	return codec.Choice{Route: r.Name, Cluster: cl.Name, Addr: ep.Addr}, true
}

// Endpoints implements codec.Upstream.
func (e *env) Endpoints(cluster string) []string {
	cl := e.snap.clusters[cluster]
	if cl == nil {
		return nil
	}
	out := make([]string, 0, len(cl.Endpoints))
	for _, ep := range cl.Endpoints {
		out = append(out, ep.Addr)
	}
	return out
}

// SendTo implements codec.Upstream: the request skips routing and load
// balancing but keeps the matching route's timeout and retries (or none).
func (e *env) SendTo(cluster, addr string, req *codec.Message, done codec.Done) {
	ex := e.exchange(req, done)
	ex.cluster = e.snap.clusters[cluster]
	if ex.cluster == nil {
		ex.local(codec.StatusNoUpstream, fmt.Sprintf("cluster %q not found", cluster))
		return
	}
	ex.fixed = e.endpoint(ex.cluster, addr)
	if ex.route = ex.match(); ex.route == nil {
		ex.route = &router.Route{Name: "direct", Action: router.Action{Cluster: cluster}}
	}
	ex.forward()
}

// Push implements codec.Upstream.
func (e *env) Push(m *codec.Message) {
	e.dc.w.Lock()
	e.dc.encodeLocked(m)
	e.dc.w.Unlock()
}

// ClusterState implements codec.Upstream.
func (e *env) ClusterState(cluster string, key any, init func() any) any {
	if cl := e.snap.clusters[cluster]; cl != nil {
		return cl.State(key, init)
	}
	return init()
}

// endpoint is the endpoint a handler names by address: the cluster's own
// (with its TLS; refused once a config update removed it), else, for an
// address the config does not list (a Redis Cluster node learnt from the
// cluster itself), the proxy's live plaintext endpoint for it.
func (e *env) endpoint(cl *upstream.Cluster, addr string) *upstream.Endpoint {
	if cl != nil {
		if ep := cl.EndpointAt(addr); ep != nil {
			return ep
		}
	}
	return e.dc.l.p.mgr.Endpoint(addr)
}

// Dedicated implements codec.Upstream.
func (e *env) Dedicated(cluster, addr string, recv func(*codec.Message, error)) (codec.DedicatedConn, error) {
	timeout := upstream.DefaultConnectTimeout
	cl := e.snap.clusters[cluster]
	if cl != nil {
		timeout = cl.ConnectTimeout
	}
	lc, dc := e.dc.lc, e.dc
	return e.endpoint(cl, addr).DialDedicated(timeout, lc.protocol, lc.options, func(m *codec.Message, err error) {
		if perr := codec.Guard("a Handler's callback", func() { recv(m, err) }); perr != nil {
			dc.codecFailed(perr)
		}
	})
}
