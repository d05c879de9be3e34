package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
)

// idLines is a codec paired by ID, for tests: a frame is the line
// "ID TEXT"; it decodes as a stream frame when TEXT is "more" or "end"
// (the last), else as a response.
type idLines struct{}

func (idLines) Split(b []byte) (codec.Split, error) { return testutil.Lines{}.Split(b) }

func (idLines) Decode(frame []byte) (*codec.Message, error) {
	head, text, _ := bytes.Cut(bytes.TrimSpace(frame), []byte(" "))
	id, err := strconv.ParseUint(string(head), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("idLines: %q: %w", frame, err)
	}
	m := &codec.Message{Kind: codec.KindResponse, ID: id, Raw: frame}
	if s := string(text); s == "more" || s == "end" {
		m.Kind, m.EndStream = codec.KindStream, s == "end"
	}
	return m, nil
}

func (idLines) Encode(dst []byte, m *codec.Message) ([]byte, error) {
	return fmt.Appendf(dst, "%d req\n", m.ID), nil
}

func (idLines) Reply(*codec.Message, codec.Status, string) (*codec.Message, error) { return nil, nil }

// protocols of both orderings: connection-level multiplexing (Dubbo, tRPC,
// Thrift) and one request after another (Redis).
var drainProtocols = []codec.Protocol{
	{Name: "byid", Ordering: codec.ByID, New: func(codec.Options, codec.Peer) (codec.Codec, error) { return idLines{}, nil }},
	{Name: "inorder", Ordering: codec.InOrder, New: func(codec.Options, codec.Peer) (codec.Codec, error) { return testutil.Lines{}, nil }},
}

// heldServer is a server that answers only when the test says so.
type heldServer struct {
	addr     string
	requests chan heldRequest
	opened   atomic.Int32
	closed   atomic.Int32
}

// heldRequest is one request line a heldServer read, with its connection.
type heldRequest struct {
	conn int32
	line string
	nc   net.Conn
}

// answer answers r: "ID ok" for a request with an ID, "ok" otherwise.
func (r heldRequest) answer(t *testing.T) {
	t.Helper()
	out := "ok\n"
	if id, _, ok := strings.Cut(r.line, " "); ok && id != "req" {
		out = id + " ok\n"
	}
	if _, err := r.nc.Write([]byte(out)); err != nil {
		t.Fatal(err)
	}
}

func newHeldServer(t *testing.T) *heldServer {
	s := &heldServer{requests: make(chan heldRequest, 16)}
	s.addr = testutil.Accept(t, func(nc net.Conn) {
		n := s.opened.Add(1)
		defer s.closed.Add(1)
		rd := bufio.NewReader(nc)
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			s.requests <- heldRequest{conn: n, line: strings.TrimSpace(line), nc: nc}
		}
	})
	return s
}

// next is the next request the server read.
func (s *heldServer) next(t *testing.T) heldRequest {
	t.Helper()
	select {
	case r := <-s.requests:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no request arrived", s.addr)
		return heldRequest{}
	}
}

// none checks that no request is waiting at the server.
func (s *heldServer) none(t *testing.T) {
	t.Helper()
	select {
	case r := <-s.requests:
		t.Fatalf("%s got a request it should not have: %q", s.addr, r.line)
	default:
	}
}

// outcome is a Request that records how it ended.
type outcome struct{ ch chan result }

type result struct {
	resp *codec.Message
	err  error
}

func newOutcome() *outcome { return &outcome{ch: make(chan result, 1)} }

func (o *outcome) Done(resp *codec.Message, err error, _ *netloop.Round) { o.ch <- result{resp, err} }

func (o *outcome) wait(t *testing.T) result {
	t.Helper()
	select {
	case r := <-o.ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the request never ended")
		return result{}
	}
}

func (o *outcome) pending(t *testing.T) {
	t.Helper()
	select {
	case r := <-o.ch:
		t.Fatalf("the request ended early: %+v", r)
	default:
	}
}

// staticCluster is a STATIC cluster named c of the endpoints at addrs.
func staticCluster(t *testing.T, addrs ...string) *clusterv3.Cluster {
	t.Helper()
	var lbs []*endpointv3.LbEndpoint
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}},
		}}})
	}
	return &clusterv3.Cluster{
		Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}},
	}
}

// apply builds and commits cluster c of addrs, as a config update does.
func apply(t *testing.T, m *Manager, addrs ...string) *Cluster {
	t.Helper()
	clusters, err := m.Build([]*clusterv3.Cluster{staticCluster(t, addrs...)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Commit(clusters)
	return clusters["c"]
}

// send sends one request to e over the pool of proto.
func send(cl *Cluster, e *Endpoint, proto codec.Protocol) (*outcome, error) {
	o := newOutcome()
	_, _, err := e.Pool(proto, nil, proto.Name).Send(cl, &codec.Message{Kind: codec.KindRequest, ID: 7}, o, nil)
	return o, err
}

// TestRemovedEndpointDrains: a request in flight when a config update
// removes its endpoint gets its answer; no new request goes to the removed
// endpoint (neither through the new cluster, nor through the old one that
// a request which arrived before the update still uses, nor through its
// pool); and its connection closes after the last answer, which releases
// the endpoint.
func TestRemovedEndpointDrains(t *testing.T) {
	for _, proto := range drainProtocols {
		t.Run(proto.Name, func(t *testing.T) {
			a, b := newHeldServer(t), newHeldServer(t)
			m := NewManager(nil)
			t.Cleanup(m.CloseAll)
			old := apply(t, m, a.addr)
			epA := old.Endpoints[0]
			first, err := send(old, epA, proto)
			if err != nil {
				t.Fatal(err)
			}
			req := a.next(t)

			cur := apply(t, m, b.addr) // a's endpoint is removed
			if got := cur.Pick(0, nil); got == nil || got.Addr != b.addr {
				t.Fatalf("the new cluster picked %v, want %s", got, b.addr)
			}
			if got := old.Pick(0, nil); got != nil {
				t.Fatalf("the old cluster picked %s, which the config removed", got.Addr)
			}
			if _, err := send(old, epA, proto); !errors.Is(err, ErrConnect) {
				t.Fatalf("a new request to the removed endpoint: %v, want a refusal as safe to retry as a connect failure", err)
			}
			first.pending(t)
			if m.Draining() != 1 || a.closed.Load() != 0 {
				t.Fatalf("draining %d endpoints, %d connections closed; want 1 draining and its connection open", m.Draining(), a.closed.Load())
			}

			req.answer(t)
			if r := first.wait(t); r.err != nil {
				t.Fatalf("the request in flight failed: %v", r.err)
			}
			testutil.Eventually(t, 10*time.Second, "the drained connection closed", func() bool {
				return a.closed.Load() == 1 && epA.Pool(proto, nil, proto.Name).Conns() == 0
			})
			testutil.Eventually(t, 10*time.Second, "the drained endpoint released", func() bool { return m.Draining() == 0 })
			a.none(t)
			if n := a.opened.Load(); n != 1 {
				t.Fatalf("the removed endpoint's server saw %d connections, want 1", n)
			}
		})
	}
}

// TestDrainTimeEndsRequests: a request still in flight at the drain time
// fails with ErrReset saying why, and the connection and endpoint are
// released.
func TestDrainTimeEndsRequests(t *testing.T) {
	for _, proto := range drainProtocols {
		t.Run(proto.Name, func(t *testing.T) {
			a := newHeldServer(t)
			m := NewManager(nil)
			m.SetDrainTime(100 * time.Millisecond)
			t.Cleanup(m.CloseAll)
			old := apply(t, m, a.addr)
			o, err := send(old, old.Endpoints[0], proto)
			if err != nil {
				t.Fatal(err)
			}
			a.next(t) // never answered
			apply(t, m)
			r := o.wait(t)
			if !errors.Is(r.err, ErrReset) || !strings.Contains(r.err.Error(), "drain time") {
				t.Fatalf("the request outliving the drain time ended with %v, want a reset naming the drain time", r.err)
			}
			testutil.Eventually(t, 10*time.Second, "the connection closed and the endpoint released", func() bool {
				return a.closed.Load() == 1 && m.Draining() == 0
			})
		})
	}
}

// TestEndpointBackWhileDraining: an address a config update brings back
// while its old connection still drains is a new endpoint: new requests go
// over a new connection, the old one still answers its request and closes,
// and the manager keeps one endpoint for the address.
func TestEndpointBackWhileDraining(t *testing.T) {
	for _, proto := range drainProtocols {
		t.Run(proto.Name, func(t *testing.T) {
			a := newHeldServer(t)
			m := NewManager(nil)
			t.Cleanup(m.CloseAll)
			first := apply(t, m, a.addr)
			oldEp := first.Endpoints[0]
			o1, err := send(first, oldEp, proto)
			if err != nil {
				t.Fatal(err)
			}
			r1 := a.next(t)
			apply(t, m)
			back := apply(t, m, a.addr)
			newEp := back.Endpoints[0]
			if newEp == oldEp {
				t.Fatal("the address came back as the draining endpoint")
			}
			o2, err := send(back, newEp, proto)
			if err != nil {
				t.Fatal(err)
			}
			r2 := a.next(t)
			if r2.conn == r1.conn {
				t.Fatal("the new request went over the draining connection")
			}
			r2.answer(t)
			r1.answer(t)
			for i, o := range []*outcome{o1, o2} {
				if r := o.wait(t); r.err != nil {
					t.Fatalf("request %d: %v", i+1, r.err)
				}
			}
			testutil.Eventually(t, 10*time.Second, "the old connection closed and its endpoint released", func() bool {
				return a.closed.Load() == 1 && m.Draining() == 0
			})
			if newEp.Pool(proto, nil, proto.Name).Conns() != 1 {
				t.Fatal("the endpoint that came back lost its connection")
			}
			m.mu.Lock()
			n := len(m.endpoints)
			m.mu.Unlock()
			if n != 1 {
				t.Fatalf("the manager holds %d endpoints, want 1", n)
			}
		})
	}
}

// TestRemovedEndpointDedicated: a client's own connection (a transaction,
// a blocking command, a subscription) to an endpoint the config removes
// stays open, as a request in flight does, until the drain time; a new one
// to that endpoint is refused.
func TestRemovedEndpointDedicated(t *testing.T) {
	a := newHeldServer(t)
	m := NewManager(nil)
	m.SetDrainTime(100 * time.Millisecond)
	t.Cleanup(m.CloseAll)
	old := apply(t, m, a.addr)
	ep := old.Endpoints[0]
	proto := drainProtocols[1]
	var mu sync.Mutex
	var ended error
	d, err := ep.DialDedicated(time.Second, proto, nil, func(_ *codec.Message, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			ended = err
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Send(&codec.Message{Kind: codec.KindRequest}); err != nil {
		t.Fatal(err)
	}
	a.next(t)
	apply(t, m)
	if _, err := ep.DialDedicated(time.Second, proto, nil, func(*codec.Message, error) {}); !errors.Is(err, ErrConnect) {
		t.Fatalf("a new dedicated connection to the removed endpoint: %v, want a refusal", err)
	}
	testutil.Eventually(t, 10*time.Second, "the dedicated connection closed at the drain time and the endpoint released", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return ended != nil && a.closed.Load() == 1 && m.Draining() == 0
	})
	if a.opened.Load() != 1 {
		t.Fatalf("the server saw %d connections, want 1", a.opened.Load())
	}
}

// streamOpener is a request whose answer opens a stream on its connection,
// as the proxy's stream relay does (Conn.Bind); its stream frames go to
// frames.
type streamOpener struct {
	conn   *Conn
	id     uint64
	frames chan *codec.Message
	bound  chan error
}

func (s *streamOpener) Done(m *codec.Message, err error, _ *netloop.Round) {
	if err != nil {
		s.bound <- err
		return
	}
	if m.Kind == codec.KindResponse {
		s.bound <- s.conn.Bind(s.id, s)
		return
	}
	s.frames <- m
}

// TestRemovedEndpointKeepsStreams: a stream that a request in flight on a
// draining connection opens goes on until its last frame; the connection
// closes then.
func TestRemovedEndpointKeepsStreams(t *testing.T) {
	proto := drainProtocols[0]
	a := newHeldServer(t)
	m := NewManager(nil)
	t.Cleanup(m.CloseAll)
	old := apply(t, m, a.addr)
	s := &streamOpener{frames: make(chan *codec.Message, 2), bound: make(chan error, 1)}
	pool := old.Endpoints[0].Pool(proto, nil, proto.Name)
	conn, id, err := pool.Send(old, &codec.Message{Kind: codec.KindRequest, OpensStream: true}, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.conn, s.id = conn, id
	req := a.next(t)
	apply(t, m)
	say := func(text string) {
		t.Helper()
		if _, err := fmt.Fprintf(req.nc, "%d %s\n", id, text); err != nil {
			t.Fatal(err)
		}
	}
	say("ok")
	select {
	case err := <-s.bound:
		if err != nil {
			t.Fatalf("the stream could not open on the draining connection: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the opening request was not answered")
	}
	say("more")
	say("end")
	for _, end := range []bool{false, true} {
		select {
		case f := <-s.frames:
			if f.EndStream != end {
				t.Fatalf("stream frame EndStream=%v, want %v", f.EndStream, end)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a stream frame did not arrive")
		}
	}
	testutil.Eventually(t, 10*time.Second, "the connection closed after the stream's last frame", func() bool {
		return a.closed.Load() == 1 && m.Draining() == 0
	})
}

// TestUnlistedEndpointKeepsDedicated: an endpoint no config listed (a
// Redis Cluster node a codec names) drains its pooled connections at a
// config update like any other, but the connections its clients own stay
// theirs past the drain time, as no config removed the node; the endpoint
// is released once they close.
func TestUnlistedEndpointKeepsDedicated(t *testing.T) {
	a := newHeldServer(t)
	m := NewManager(nil)
	m.SetDrainTime(100 * time.Millisecond)
	t.Cleanup(m.CloseAll)
	ep := m.Endpoint(a.addr)
	proto := drainProtocols[1]
	pooled, err := send(&Cluster{MaxConnections: 1, MaxPending: 1, ConnectTimeout: time.Second}, ep, proto)
	if err != nil {
		t.Fatal(err)
	}
	a.next(t) // never answered
	d, err := ep.DialDedicated(time.Second, proto, nil, func(*codec.Message, error) {})
	if err != nil {
		t.Fatal(err)
	}
	apply(t, m)
	if r := pooled.wait(t); !errors.Is(r.err, ErrReset) {
		t.Fatalf("the pooled request outliving the drain time ended with %v, want a reset", r.err)
	}
	if err := d.Send(&codec.Message{Kind: codec.KindRequest}); err != nil {
		t.Fatalf("the dedicated connection after the drain time: %v", err)
	}
	a.next(t)
	if m.Draining() != 1 {
		t.Fatalf("draining %d endpoints, want the one with a dedicated connection", m.Draining())
	}
	d.Close()
	testutil.Eventually(t, 10*time.Second, "the endpoint released", func() bool { return m.Draining() == 0 })
}
