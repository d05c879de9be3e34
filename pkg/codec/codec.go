// Package codec is the SDK every Rosetta protocol implements.
//
// A protocol package (protocols/<name>) registers a Protocol in its init
// function. The proxy looks the protocol up by the name a listener names and
// asks it for one Codec per connection. The proxy never looks inside a frame
// itself: it asks the codec where a frame ends, what kind of message it is,
// which request id it carries and which attributes it has, and it asks the
// codec to write messages back out, with a new request id and any attribute
// mutations a route asks for.
//
// The contract, in the order the proxy uses it:
//
//  1. Split is called with the bytes received so far. It answers either the
//     length of the first frame (Split.Len > 0), or how many more bytes it needs
//     at least before it can tell (Split.Need > 0), or an error when the bytes
//     can never become a valid frame. A codec must reject any length read from
//     the wire that is larger than its MaxFrame: the proxy buffers what Split
//     asks for, so Split is the only guard against unbounded buffers.
//  2. Decode is called with exactly one whole frame. The Message it returns
//     owns the slice. Decode should parse only what the proxy needs to route
//     (kind, id, cheap attributes) and decode the rest lazily.
//  3. Encode appends the wire form of a message to dst. It must honour the
//     message's current ID and its Mutations; when neither changed, copying
//     Raw is correct and cheapest.
//  4. Reply builds the protocol's own error answer to a request, for errors the
//     proxy generates itself (no route, timeout, no healthy upstream, ...).
//
// A Protocol says how the proxy treats the protocol as a whole:
//
//   - Ordering: ByID protocols have their request IDs rewritten and share
//     upstream connections among callers (Dubbo, Thrift, tRPC); InOrder
//     answers are paired first in, first out and written back in request
//     order (Redis).
//   - MetricAttribute: the attribute whose value labels the per-operation
//     metrics of each request (every built-in codec).
//   - New: called once when config arrives, to refuse bad options early,
//     then once per connection, with the Peer at its far end: a caller or a
//     server (Redis decodes commands from one and answers from the other).
//
// Optional capabilities are separate interfaces that the proxy type-asserts
// on a Codec; each is implemented by at least one codec:
//
//   - HeartbeatReplier: a keep-alive from a caller or a server is answered
//     by the proxy, not sent on (Dubbo).
//   - HeadDecoder: a request cut short by a buffer or time limit gets the
//     StatusBadRequest reply, from the kind and ID in its first bytes (Dubbo).
//   - GoAwayer: written once on each caller's connection when the proxy
//     drains a listener (Dubbo's readonly event).
//   - Sniffer: a listener whose codec is Auto asks each Sniffer whether a
//     new connection's first bytes are its protocol (Dubbo, Thrift, tRPC,
//     Redis).
//   - Handshaker: written on each new connection to a server, pooled or
//     dedicated, ahead of any request (Redis: AUTH, READONLY).
//   - PoolKeyer: asked per request; requests of different keys get separate
//     upstream connection pools (Thrift: transport and protocol).
//   - Handler: every decoded request goes to Handle instead of the router
//     (Redis). Handle gets an Upstream (routes, clusters, SendTo, Dedicated
//     connections, Push, ClusterState) and answers through a Replier.
//   - Closer: Close is called once the caller's connection has ended (Redis).
//   - TraceCarrier: a request's W3C trace context travels in its attributes
//     (Dubbo attachments, tRPC trans_info, Thrift THeader headers).
//   - ResponseCoder: the protocol's own code for an answer (and for the
//     local reply to each Status), the response_code of Istio's metrics
//     (every built-in codec; without it, the Status's name).
//
// One optional capability is not the proxy's: Caller (caller.go) builds a
// request from attributes and arguments given as text and shows answers as
// text, for rosettactl call and serve, which find it through the registry
// (Dubbo, Thrift, tRPC, Redis).
//
// A message has one hook: Message.Written, called once an answer or push is
// queued for the caller (Redis starts a subscription's stream after its
// answer).
//
// The proxy calls Split (and Sniff within it), Decode, Reply,
// HeartbeatReply and DecodeHead through the Safe functions and Guard
// (safe.go), which turn a panic into an error; fuzzing holds the rest to
// never panicking.
// docs/writing-a-codec.md walks through the contract on examples/toy and,
// for an in-order protocol, examples/lines.
package codec

import (
	"errors"
	"fmt"
)

// Kind says what a message is. The proxy treats each kind differently:
// requests are routed and await a response, oneway requests are routed and
// await nothing, heartbeats are answered locally, responses are paired with
// the request of the same ID.
type Kind uint8

const (
	KindUnknown Kind = iota
	// KindRequest is a call that expects one response with the same ID.
	KindRequest
	// KindOneway is a call that expects no response.
	KindOneway
	// KindResponse answers the request with the same ID.
	KindResponse
	// KindHeartbeat is a keep-alive request; the proxy answers it itself.
	KindHeartbeat
	// KindHeartbeatResponse answers a heartbeat.
	KindHeartbeatResponse
	// KindStream is a frame of a stream opened by an earlier request with the
	// same ID; it goes to the upstream that stream was routed to.
	KindStream
)

var kindNames = [...]string{"unknown", "request", "oneway", "response", "heartbeat", "heartbeat-response", "stream"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Status classifies a response, and names the errors the proxy asks a codec
// to turn into a local reply.
type Status uint8

const (
	// StatusOK is a successful response.
	StatusOK Status = iota
	// StatusNoRoute: no route matched the request.
	StatusNoRoute
	// StatusNoUpstream: the route's cluster has no healthy endpoint, or the
	// upstream connection could not be made.
	StatusNoUpstream
	// StatusTimeout: the route's timeout expired before the upstream answered.
	StatusTimeout
	// StatusOverloaded: a connection or pending-request limit was reached.
	StatusOverloaded
	// StatusRateLimited: a rate limit refused the request.
	StatusRateLimited
	// StatusUpstreamReset: the upstream connection closed with the request in flight.
	StatusUpstreamReset
	// StatusBadRequest: the request was understood but cannot be handled.
	StatusBadRequest
	// StatusUnauthorized: an authorization policy refused the request.
	StatusUnauthorized
	// StatusFault: an injected fault aborted the request.
	StatusFault
	// StatusError: the upstream answered with an application or protocol error.
	StatusError
)

var statusNames = [...]string{"ok", "no_route", "no_upstream", "timeout", "overloaded", "rate_limited", "upstream_reset", "bad_request", "unauthorized", "fault", "error"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", s)
}

// Ordering says how a protocol pairs responses with requests on one
// connection.
type Ordering uint8

const (
	// ByID: each response carries its request's ID, so requests from many
	// downstream connections can share an upstream connection once the proxy
	// rewrites their IDs (Dubbo, Thrift, tRPC).
	ByID Ordering = iota
	// InOrder: responses come back in the order the requests went out and
	// carry no ID (Redis). The proxy pairs them first in, first out.
	InOrder
)

// Split is the answer of Codec.Split. Exactly one field is positive.
type Split struct {
	// Len is the length of the first whole frame in the buffer.
	Len int
	// Need is how many more bytes are needed at least before Split can answer.
	Need int
}

// Codec reads and writes one connection's frames. The proxy makes one Codec
// per connection (downstream or upstream). It calls Split and Decode from the
// connection's reader goroutine only, and Encode, Reply and HeartbeatReply
// under the connection's write lock only; the two sides may run at the same
// time, so state that a codec shares between reading and writing (a transport
// detected on the first frame, say) must be safe for that. Encode may be given
// a message decoded by another connection's codec of the same protocol: what a
// message needs to be written must travel in the message (Private).
type Codec interface {
	// Split finds the end of the first frame in buf. See the package doc.
	Split(buf []byte) (Split, error)
	// Decode parses one whole frame; the message owns frame afterwards.
	// When a frame is malformed but its kind and ID could be read, Decode may
	// return that partial message with the error: the proxy then answers it
	// with the codec's reply for StatusBadRequest before closing the
	// connection, so the caller gets a protocol error, not a bare close.
	Decode(frame []byte) (*Message, error)
	// Encode appends the wire form of msg, with its current ID and its
	// mutations applied, to dst.
	Encode(dst []byte, msg *Message) ([]byte, error)
	// Reply builds a local reply to req for an error the proxy produced.
	// detail is a human-readable reason that the codec may carry on the wire.
	// It returns nil, nil when the request kind needs no reply (oneway).
	Reply(req *Message, status Status, detail string) (*Message, error)
}

// HeartbeatReplier is an optional capability: a codec whose protocol has
// keep-alive frames answers them without a trip upstream.
type HeartbeatReplier interface {
	HeartbeatReply(req *Message) (*Message, error)
}

// Sniffer is an optional capability: it tells from the first bytes a caller
// sends on a connection whether they belong to this protocol. A listener whose
// codec is Auto picks, per connection, the registered protocol that is sure
// it matches, among those whose codecs are Sniffers.
//
// prefix is everything the caller has sent so far, up to MaxSniff bytes. sure
// says the answer is final: more bytes cannot change it. While it is false
// the proxy waits for more (match is then only a guess, and ignored), up to
// MaxSniff bytes and the listener's sniffing time. A Sniffer should be sure
// of a match only on what no other protocol's callers would open with, and
// sure of no match as soon as a byte rules it out.
//
// Sniff is called before any other method, on a codec the proxy makes once
// per listener and shares among its connections: it must read only prefix
// (and the options the codec was made with), never change the codec, and
// keep no part of prefix.
type Sniffer interface {
	Sniff(prefix []byte) (match bool, sure bool)
}

// MaxSniff is the most bytes of a connection the proxy hands Sniff. A
// protocol a Sniffer cannot tell from this many must be named in config.
const MaxSniff = 64

// HeadDecoder is an optional capability: it reads the kind and ID of a
// frame from its first bytes, before the frame is whole, so a frame the
// proxy refuses unfinished (over a buffer limit, or arriving too slowly)
// still gets the protocol's error reply rather than a bare close. ok is
// false when prefix is too short to tell.
type HeadDecoder interface {
	DecodeHead(prefix []byte) (m *Message, ok bool)
}

// GoAwayer is an optional capability: a frame that tells a caller to stop
// sending on this connection. The proxy writes it once on each of a
// listener's connections when it drains the listener (config removed or
// moved it, shutdown), then closes each connection once its requests in
// flight are answered. The slice may be shared: the proxy copies it.
//
// Of the built-in codecs only Dubbo has one: its readonly event (see
// protocols/dubbo). The others have no such frame on the wire: tRPC's
// protocol (trpc.proto) closes only streams (TRPC_STREAM_FRAME_CLOSE, per
// stream id), and trpc-go drains by deregistering from naming and waiting
// for requests in flight; Thrift has no server-initiated message; Redis
// has none in RESP2 or RESP3. Their callers learn of a drain from the
// close that follows their last answer. (HBONE tunnels get HTTP/2's
// GOAWAY from pkg/hbone, whatever the codec.)
type GoAwayer interface {
	GoAway() []byte
}

// Handshaker is an optional capability: a protocol whose connections to a
// server must open with frames of the proxy's own (Redis: AUTH with the
// proxy's credentials, READONLY for replica reads). The proxy calls
// Handshake once on each new upstream connection (pooled or dedicated),
// before any request, and writes what it appends to dst ahead of them. The
// codec recognises the answers itself: Decode returns them as any kind but
// KindResponse and KindStream, which the proxy does not pair with a request
// (a dedicated connection's receiver sees them), or an error when the server
// refused the handshake, which closes the connection.
type Handshaker interface {
	Handshake(dst []byte) []byte
}

// Errors a codec wraps so the proxy and the conformance kit can tell them apart.
var (
	// ErrMalformed: the bytes are not a valid frame; the connection must close.
	ErrMalformed = errors.New("malformed frame")
	// ErrTooLarge: a length or count from the wire exceeds the codec's limit.
	ErrTooLarge = errors.New("frame too large")
	// ErrUnsupported: the frame is valid but this codec does not handle it,
	// or a mutation cannot be written in this protocol or transport.
	ErrUnsupported = errors.New("unsupported")
)

// Errorf returns an error prefixed with the codec's name that wraps kind, for
// example Errorf("dubbo", ErrMalformed, "bad magic %x", m).
func Errorf(protocol string, kind error, format string, args ...any) error {
	return fmt.Errorf("codec/%s: %s: %w", protocol, fmt.Sprintf(format, args...), kind)
}

// DefaultMaxFrame is the frame size limit a codec uses when its options do not
// set one: 8 MiB, Dubbo's own default payload limit.
const DefaultMaxFrame = 8 << 20

// PoolKeyer is an optional capability for protocols whose wire format may
// differ between connections (Thrift: framed, unframed or THeader; binary or
// compact). A server reads one format per connection, so requests of
// different formats must not share an upstream connection: the proxy keeps
// one pool per key. PoolKey names m's format; it must be cheap and must not
// allocate.
type PoolKeyer interface {
	PoolKey(m *Message) string
}

// TraceCarrier is an optional capability for protocols whose requests carry
// W3C trace context as attributes: Get("traceparent") and Get("tracestate")
// read the caller's, and Set of those keys writes the proxy's into the frame
// Encode writes. TraceInfo names req's RPC service (empty when the protocol
// has none) and method, for span names, and reports whether req has a place
// for trace context (a Thrift request has one only over THeader). It is
// asked only for the requests a traced listener samples; the sampling
// decision asks every request of such a listener for Get("traceparent"),
// which should be cheap for a request that carries none.
type TraceCarrier interface {
	TraceInfo(req *Message) (service, method string, carries bool)
}
