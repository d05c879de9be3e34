package hbone

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	rtestutil "github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/hbone/hbonetest"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
)

var eventually = rtestutil.Eventually

const (
	serverID = "spiffe://cluster.local/ns/demo/sa/rosetta-waypoint"
	callerID = "spiffe://cluster.local/ns/shop/sa/frontend"
	dest     = "10.96.0.1:20880"
)

// mesh issues the certificates of one trust domain.
type mesh struct {
	ca    *identitytest.CA
	roots *x509.CertPool
}

func newMesh(name string) *mesh {
	ca := identitytest.NewCA(name)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &mesh{ca: ca, roots: roots}
}

func (m *mesh) cert(t *testing.T, id string) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(m.ca.Leaf(id, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serverTLS is an Istio mTLS server config, as identity.ServerConfig's: it
// picks its config per handshake.
func (m *mesh) serverTLS(t *testing.T) *tls.Config {
	cert := m.cert(t, serverID)
	return ServerTLS(&tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"istio"},
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    m.roots,
		}, nil
	}})
}

func (m *mesh) clientTLS(t *testing.T, id string, alpn ...string) *tls.Config {
	return &tls.Config{
		Certificates:       []tls.Certificate{m.cert(t, id)},
		InsecureSkipVerify: true, // mesh certificates have no DNS names; the server is not under test
		NextProtos:         alpn,
	}
}

// testServer serves HBONE on loopback; every stream it accepts goes to
// streams.
type testServer struct {
	*Server
	addr     string
	reg      *prometheus.Registry
	streams  chan *Stream
	requests chan Request
}

func startServer(t *testing.T, m *mesh, lim Limits) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String(), reg: prometheus.NewRegistry(), streams: make(chan *Stream, 100), requests: make(chan Request, 10)}
	ts.Server = &Server{
		TLS:    m.serverTLS(t),
		Limits: lim,
		Open: func(r Request) (func(net.Conn), string) {
			select {
			case ts.requests <- r:
			default: // a test that opens many streams reads none of them
			}
			if r.Destination.String() != dest {
				return nil, RefusedUnknownAuthority
			}
			return func(nc net.Conn) { ts.streams <- nc.(*Stream) }, ""
		},
	}
	ts.Metrics = NewMetrics(ts.reg)
	go func() { _ = ts.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ts.Shutdown(ctx)
	})
	return ts
}

// connected starts a server with lim and connects a caller of the mesh to
// it over HTTP/2.
func connected(t *testing.T, lim Limits) (*testServer, *hbonetest.Conn) {
	t.Helper()
	m := newMesh("mesh")
	ts := startServer(t, m, lim)
	cc, err := dialH2(t, ts.addr, m.clientTLS(t, callerID, "h2"))
	if err != nil {
		t.Fatal(err)
	}
	return ts, cc
}

// dialH2 opens an HTTP/2 connection to the server.
func dialH2(t *testing.T, addr string, cfg *tls.Config) (*hbonetest.Conn, error) {
	t.Helper()
	cc, err := hbonetest.Dial(addr, cfg)
	if err == nil {
		t.Cleanup(func() { cc.Close() })
	}
	return cc, err
}

// open sends a CONNECT to authority: the tunnel when it is accepted, and
// the server's status.
func open(t *testing.T, cc *hbonetest.Conn, authority string) (*hbonetest.Tunnel, int) {
	t.Helper()
	tn, status, err := cc.Connect(authority)
	if err != nil {
		t.Fatal(err)
	}
	if tn != nil {
		t.Cleanup(func() { tn.Close() })
	}
	return tn, status
}

func (ts *testServer) next(t *testing.T) *Stream {
	t.Helper()
	select {
	case s := <-ts.streams:
		t.Cleanup(func() { s.Close() })
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no stream was served")
		return nil
	}
}

func readN(t *testing.T, r io.Reader, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func TestStreamCarriesBothWaysAndEndsLikeAConnection(t *testing.T) {
	ts, cc := connected(t, DefaultLimits())
	tn, status := open(t, cc, dest)
	if status != http.StatusOK {
		t.Fatalf("CONNECT: %d", status)
	}
	s := ts.next(t)
	r := <-ts.requests
	if r.Principal != "cluster.local/ns/shop/sa/frontend" || r.Destination.String() != dest {
		t.Errorf("request %+v", r)
	}
	if s.LocalAddr().String() != dest || s.RemoteAddr() != r.Remote {
		t.Errorf("addresses %s <- %s", s.LocalAddr(), s.RemoteAddr())
	}
	if _, ok := any(s).(syscall.Conn); ok {
		t.Error("a Stream passes for a socket: an event loop would try to read its descriptor")
	}

	if _, err := tn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, s, 4); got != "ping" {
		t.Errorf("server read %q", got)
	}
	if _, err := s.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, tn, 4); got != "pong" {
		t.Errorf("caller read %q", got)
	}
	// The caller ends its side: the server reads EOF and can still answer.
	tn.CloseWrite()
	if n, err := s.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Errorf("after the caller's END_STREAM: %d, %v; want EOF", n, err)
	}
	if _, err := s.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	// Close sends what was written, then ends the stream.
	s.Close()
	rest, err := io.ReadAll(tn)
	if string(rest) != "bye" || err != nil {
		t.Errorf("caller read %q, %v after Close; want bye and the stream's end", rest, err)
	}
	if _, err := s.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
}

func TestStreamDeadlinesLeaveItUsable(t *testing.T) {
	ts, cc := connected(t, DefaultLimits())
	tn, _ := open(t, cc, dest)
	s := ts.next(t)

	_ = s.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	start := time.Now()
	_, err := s.Read(make([]byte, 8))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the deadline took %v", d)
	}
	// A new deadline, and the stream reads again (an HTTP/2 stream's own
	// read deadline would have closed its body for good).
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	go func() { _, _ = tn.Write([]byte("late")) }()
	if got := readN(t, s, 4); got != "late" {
		t.Errorf("read %q after the deadline moved", got)
	}
	// A deadline in the past fails at once; none means none.
	_ = s.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("deadline in the past: %v", err)
	}
	_ = s.SetReadDeadline(time.Time{})
	go func() { _, _ = tn.Write([]byte("x")) }()
	if got := readN(t, s, 1); got != "x" {
		t.Errorf("read %q without a deadline", got)
	}
}

func TestStreamResetByTheCaller(t *testing.T) {
	ts, cc := connected(t, DefaultLimits())
	tn, _ := open(t, cc, dest)
	s := ts.next(t)
	tn.Reset()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := s.Read(make([]byte, 8))
	if err == nil || err == io.EOF || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after a reset: %v; want the reset", err)
	}
	_ = s.SetWriteDeadline(time.Now().Add(5 * time.Second))
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		_, werr = s.Write([]byte("answer"))
		time.Sleep(time.Millisecond)
	}
	if werr == nil {
		t.Error("writes to a reset stream keep succeeding")
	}
}

func TestStalledCallerIsReset(t *testing.T) {
	m := newMesh("mesh")
	lim := DefaultLimits()
	lim.WriteTimeout = 100 * time.Millisecond
	ts := startServer(t, m, lim)
	cc, err := dialH2(t, ts.addr, m.clientTLS(t, callerID, "h2"))
	if err != nil {
		t.Fatal(err)
	}
	open(t, cc, dest) // and never read what comes back
	s := ts.next(t)
	_ = s.SetWriteDeadline(time.Now().Add(10 * time.Second))
	chunk := make([]byte, 64<<10)
	var err2 error
	for sent := 0; err2 == nil && sent < 256<<20; sent += len(chunk) {
		_, err2 = s.Write(chunk)
	}
	if err2 == nil || errors.Is(err2, os.ErrDeadlineExceeded) {
		t.Fatalf("writes to a caller that reads nothing: %v; want the stream reset after WriteTimeout", err2)
	}
}

func TestRefusals(t *testing.T) {
	ts, cc := connected(t, DefaultLimits())
	for authority, want := range map[string]int{"10.96.0.9:20880": 503, "greeter:20880": 400, "10.96.0.1:0": 400} {
		if _, status := open(t, cc, authority); status != want {
			t.Errorf("CONNECT %s: %d, want %d", authority, status, want)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "https://"+dest+"/", nil)
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "CONNECT" {
		t.Errorf("POST: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// The connection survived every refusal.
	if _, status := open(t, cc, dest); status != http.StatusOK {
		t.Errorf("CONNECT after the refusals: %d", status)
	}
	for reason, want := range map[string]float64{RefusedUnknownAuthority: 1, RefusedBadAuthority: 2, RefusedMethod: 1, RefusedMaxConnections: 0} {
		if got := testutil.ToFloat64(ts.Metrics.refused.WithLabelValues(reason)); got != want {
			t.Errorf("refused %s: %v, want %v", reason, got, want)
		}
	}
	if got := testutil.ToFloat64(ts.Metrics.accepted); got != 1 {
		t.Errorf("accepted: %v", got)
	}
}

func TestHandshakeNeedsAMeshCertificateAndH2(t *testing.T) {
	m := newMesh("mesh")
	ts := startServer(t, m, DefaultLimits())
	for name, cfg := range map[string]*tls.Config{
		"no certificate":  {InsecureSkipVerify: true, NextProtos: []string{"h2"}},
		"another mesh's":  newMesh("other").clientTLS(t, callerID, "h2"),
		"Istio mTLS ALPN": m.clientTLS(t, callerID, "istio"),
		"no ALPN":         m.clientTLS(t, callerID),
	} {
		if cc, err := dialH2(t, ts.addr, cfg); err == nil {
			if _, status, err := cc.Connect(dest); err == nil {
				t.Errorf("%s: CONNECT answered %d", name, status)
			}
		}
	}
	eventually(t, 5*time.Second, "4 failed handshakes counted", func() bool { return testutil.ToFloat64(ts.Metrics.handshakes) == 4 })
	if len(ts.requests) != 0 {
		t.Errorf("%d requests reached Open", len(ts.requests))
	}
}

func TestMaxConnections(t *testing.T) {
	m := newMesh("mesh")
	lim := DefaultLimits()
	lim.MaxConnections = 1
	ts := startServer(t, m, lim)
	if _, err := dialH2(t, ts.addr, m.clientTLS(t, callerID, "h2")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the first connection counted", func() bool { return testutil.ToFloat64(ts.Metrics.conns) == 1 })
	if cc, err := dialH2(t, ts.addr, m.clientTLS(t, callerID, "h2")); err == nil {
		if _, status, err := cc.Connect(dest); err == nil {
			t.Errorf("a connection past the maximum was served: %d", status)
		}
	}
	if got := testutil.ToFloat64(ts.Metrics.connsRefused); got != 1 {
		t.Errorf("refused connections: %v", got)
	}
}

// However a stream ends (the proxy closes it, the caller resets it, the
// caller ends its side and the proxy then closes), its goroutines end.
func TestStreamsLeaveNoGoroutines(t *testing.T) {
	ts, cc := connected(t, DefaultLimits())
	// The count settles once the first stream's goroutines are gone.
	settled := func() int {
		n := runtime.NumGoroutine()
		for range 20 {
			time.Sleep(10 * time.Millisecond)
			k := runtime.NumGoroutine()
			if k == n {
				break
			}
			n = k
		}
		return n
	}
	tn, _ := open(t, cc, dest)
	ts.next(t).Close()
	tn.Close()
	base := settled()
	for i := range 30 {
		tn, _ := open(t, cc, dest)
		s := <-ts.streams
		switch i % 3 {
		case 0:
			s.Close()
		case 1:
			tn.Reset()
			_, _ = s.Read(make([]byte, 1)) // the reset reaches the proxy's side
			s.Close()
		case 2:
			tn.CloseWrite()
			_, _ = s.Read(make([]byte, 1))
			s.Close()
		}
		tn.Close()
	}
	eventually(t, 5*time.Second, "the streams' goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
}
