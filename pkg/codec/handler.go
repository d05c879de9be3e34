package codec

// Handler is an optional capability for protocols whose requests need more
// than "one request, one route, one upstream": Redis answers AUTH and HELLO
// itself, splits MGET across shards and follows cluster redirections. When a
// downstream connection's Codec implements Handler, the proxy hands every
// decoded request to Handle instead of routing it itself.
//
// Handle runs on the connection's reader goroutine, once per request, in the
// order requests arrive; it must not block on the network. It answers through
// reply exactly once per request, from any goroutine and at any time; the
// proxy writes answers in request order for InOrder protocols. Passing nil to
// reply means "no answer" (a oneway request).
type Handler interface {
	Handle(req *Message, up Upstream, reply Replier)
}

// Replier takes the answer to one request handed to a Handler. It is an
// interface, not a function, so that the proxy passes the request's own
// state without allocating a closure per request.
type Replier interface {
	Reply(*Message)
}

// ReplyFunc makes a function a Replier.
type ReplyFunc func(*Message)

// Reply calls f.
func (f ReplyFunc) Reply(m *Message) { f(m) }

// Done receives the outcome of a request sent upstream: the response, or a
// nil response and the status of the error the proxy met (no route, timeout,
// no healthy upstream, ...), with a description.
type Done func(resp *Message, status Status, detail string)

// Upstream is what the proxy offers a Handler: its routes, its clusters and
// their pooled, multiplexed connections.
type Upstream interface {
	// Forward routes req as the proxy routes any request: the first matching
	// route, its policies (timeout, retries, faults, mirrors, mutations), the
	// cluster's load balancer.
	Forward(req *Message, done Done)
	// Route reports the cluster the first matching route would pick for req,
	// and the route's name.
	Route(req *Message) (cluster, route string, ok bool)
	// Pick reports where Forward would send req now: the first matching
	// route, the cluster it picks and the endpoint the cluster's balancer
	// picks with the route's hash policy. Under a consistent hash that is
	// where req's hash goes, so a handler can pin a dedicated connection to
	// the server that holds a key; under other balancers it is one possible
	// choice.
	Pick(req *Message) (Choice, bool)
	// Endpoints lists a cluster's endpoint addresses.
	Endpoints(cluster string) []string
	// SendTo sends req to one address, over the pooled connections to it,
	// with the given cluster's limits and timeouts. The address need not be
	// one of the cluster's endpoints (a Redis Cluster redirection names any
	// node).
	SendTo(cluster, addr string, req *Message, done Done)
	// Dedicated opens a connection to addr that no other client shares, for
	// stateful exchanges (transactions, blocking commands, subscriptions).
	// Every message the server sends on it goes to recv, in order; recv gets
	// a nil message and the error once the connection ends.
	Dedicated(cluster, addr string, recv func(*Message, error)) (DedicatedConn, error)
	// Push writes m to the client now, outside the order of answers: for
	// messages no request asked for (Redis pub/sub messages). A Handler
	// that pushes must keep the protocol's own ordering rules. m.Written
	// tells whether it was queued.
	Push(m *Message)
	// ClusterState returns the value kept with a cluster under key for the
	// protocol's handlers, made by init on first use: state that belongs to
	// the servers behind the cluster (a Redis Cluster's slot map), shared by
	// every client of every listener that routes there. It outlives config
	// updates that keep the cluster, and is forgotten with the cluster.
	// init may run more than once when first uses race (one result is
	// kept), so it must have no side effects.
	ClusterState(cluster string, key any, init func() any) any
}

// Choice is where Forward would send a request (Upstream.Pick).
type Choice struct {
	Route, Cluster, Addr string
}

// DedicatedConn is an upstream connection owned by one downstream client.
type DedicatedConn interface {
	// Send writes req as it is (no ID rewriting).
	Send(req *Message) error
	Close()
}

// Closer is an optional capability: the proxy calls Close once when the
// client's connection has ended, on the connection's reader goroutine after
// its last Decode and Handle, so a codec can release what it holds for that
// client (Redis: pinned and subscription connections).
type Closer interface {
	Close()
}
