package istio

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rosetta-mesh/rosetta/pkg/identity"
)

// testLogger discards the workloads' logs unless ROSETTA_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("ROSETTA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TestIdentity: a workload gets its Istio identity from istiod's CA with
// a ServiceAccount token, as a sidecar does, and keeps doing mutual TLS
// across certificate rotations.
func TestIdentity(t *testing.T) {
	c, m := needMesh(t)
	const ns = "demo"
	c.ServiceAccount(t, ns, "rosetta-waypoint")
	c.ServiceAccount(t, ns, "dubbo-consumer")
	roots := m.rootCertFile(t, c, ns)
	// source asks istiod for certificates of ServiceAccount sa, with a
	// token for the given audiences (none: the API server's own).
	source := func(t *testing.T, sa string, ttl time.Duration, audiences ...string) *identity.IstiodSource {
		return &identity.IstiodSource{Addr: m.secureGRPCAddr, RootCertFile: roots,
			TokenFile: c.TokenFile(t, ns, sa, time.Hour, audiences...), ServerName: identity.DefaultServerName,
			ClusterID: clusterID, TTL: ttl}
	}
	const waypointID = "spiffe://cluster.local/ns/demo/sa/rosetta-waypoint"
	const consumerID = "spiffe://cluster.local/ns/demo/sa/dubbo-consumer"
	ctx := context.Background()

	t.Run("a token for istio-ca gets the ServiceAccount's certificate", func(t *testing.T) {
		b, err := source(t, "rosetta-waypoint", time.Hour, "istio-ca").Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := identity.ID{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: "rosetta-waypoint"}
		if b.ID != want || b.ID.String() != waypointID {
			t.Fatalf("ID = %+v (%s), want %s", b.ID, b.ID, waypointID)
		}
		leaf := b.Cert.Leaf
		var uris []string
		for _, u := range leaf.URIs {
			uris = append(uris, u.String())
		}
		if !slices.Equal(uris, []string{waypointID}) {
			t.Errorf("URI SANs %v, want only %s", uris, waypointID)
		}
		for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if !slices.Contains(leaf.ExtKeyUsage, u) {
				t.Errorf("extended key usages %v lack %v", leaf.ExtKeyUsage, u)
			}
		}
		// Signed by the root istiod publishes, checked here without the
		// identity package.
		pem, err := os.ReadFile(roots)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		inter := x509.NewCertPool()
		for _, der := range b.Cert.Certificate[1:] {
			ic, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			inter.AddCert(ic)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("the certificate does not chain to istio-ca-root-cert: %v", err)
		}
		if left := time.Until(b.NotAfter); left < 55*time.Minute || left > 61*time.Minute {
			t.Errorf("certificate valid for %v more, asked for 1h", left)
		}
	})

	t.Run("a token for the API server's audience is refused", func(t *testing.T) {
		b, err := source(t, "rosetta-waypoint", time.Hour).Fetch(ctx)
		if status.Code(err) != codes.Unauthenticated || b != nil {
			t.Fatalf("Fetch = %v, %v; want istiod's Unauthenticated", b, err)
		}
	})

	// istiod honours any TTL of at least a second (the request carries
	// whole seconds; 0 means its default, 24h) up to MAX_WORKLOAD_CERT_TTL
	// (90 days by default), and backdates NotBefore by 2 minutes for clock
	// skew.
	t.Run("istiod's TTL bounds", func(t *testing.T) {
		b, err := source(t, "rosetta-waypoint", time.Second, "istio-ca").Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if left := time.Until(b.NotAfter); left > 2*time.Second {
			t.Errorf("a 1s certificate is valid for %v more", left)
		}
		_, err = source(t, "rosetta-waypoint", 91*24*time.Hour, "istio-ca").Fetch(ctx)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "greater than the max allowed TTL") {
			t.Fatalf("a 91-day TTL: %v; want InvalidArgument, over the max", err)
		}
	})

	t.Run("mutual TLS keeps working across rotations", func(t *testing.T) {
		// Each workload renews at half its certificate's remaining life,
		// here every 4 s, leaving a loaded machine 4 s to fetch the next.
		const ttl = 8 * time.Second
		const wantRotations = 3
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		server := identity.NewWorkload(source(t, "rosetta-waypoint", ttl, "istio-ca"), testLogger())
		client := identity.NewWorkload(source(t, "dubbo-consumer", ttl, "istio-ca"), testLogger())
		for _, w := range []*identity.Workload{server, client} {
			if err := w.Start(ctx); err != nil {
				t.Fatal(err)
			}
		}
		srv := startEchoServer(t, identity.ServerConfig(server))
		dial := func() (*tls.Conn, error) {
			d := &net.Dialer{Timeout: 5 * time.Second}
			return tls.DialWithDialer(d, "tcp", srv.addr, identity.ClientConfig(client, []string{waypointID}, ""))
		}
		// A connection made before any rotation, used again at the end.
		early, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		defer early.Close()
		earlyRW := bufio.NewReadWriter(bufio.NewReader(early), bufio.NewWriter(early))
		if err := roundTrip(earlyRW, "early"); err != nil {
			t.Fatal(err)
		}

		serverSerials := map[string]bool{}
		var calls, failures int
		var firstFailure error
		// call makes a new connection (a new handshake) and a round trip.
		call := func() {
			calls++
			err := func() error {
				conn, err := dial()
				if err != nil {
					return err
				}
				defer conn.Close()
				cs := conn.ConnectionState()
				if id, ok := identity.PeerID(cs); !ok || id.String() != waypointID {
					return fmt.Errorf("server identity %v", id)
				}
				serverSerials[cs.PeerCertificates[0].SerialNumber.String()] = true
				return roundTrip(bufio.NewReadWriter(bufio.NewReader(conn), bufio.NewWriter(conn)), fmt.Sprint(calls))
			}()
			if err != nil {
				failures++
				if firstFailure == nil {
					firstFailure = fmt.Errorf("call %d: %w", calls, err)
				}
			}
			time.Sleep(5 * time.Millisecond) // a steady stream, not a busy loop
		}
		deadline := time.Now().Add(60 * time.Second)
		for server.Rotations() < wantRotations || client.Rotations() < wantRotations {
			if time.Now().After(deadline) {
				t.Fatalf("rotations after 60s: server %d, client %d; want %d each", server.Rotations(), client.Rotations(), wantRotations)
			}
			call()
		}
		// And with the certificates of the last rotations.
		for range 10 {
			call()
		}
		if err := roundTrip(earlyRW, "early again"); err != nil {
			t.Errorf("the connection made before the rotations broke: %v", err)
		}
		early.Close()
		srv.stop()
		t.Logf("%d calls over %d server and %d client rotations; %d server certificates seen",
			calls, server.Rotations(), client.Rotations(), len(serverSerials))
		if failures > 0 {
			t.Errorf("%d of %d calls failed, first: %v", failures, calls, firstFailure)
		}
		if err := srv.firstErr(); err != nil {
			t.Errorf("server side: %v", err)
		}
		if len(serverSerials) < wantRotations+1 {
			t.Errorf("the client saw %d server certificates, want at least %d", len(serverSerials), wantRotations+1)
		}
		peers, serials := srv.seen()
		if !slices.Equal(peers, []string{consumerID}) {
			t.Errorf("the server saw client identities %v, want only %s", peers, consumerID)
		}
		if serials < wantRotations+1 {
			t.Errorf("the server saw %d client certificates, want at least %d", serials, wantRotations+1)
		}
	})
}

// roundTrip sends a line and expects it back.
func roundTrip(rw *bufio.ReadWriter, msg string) error {
	if _, err := rw.WriteString(msg + "\n"); err != nil {
		return err
	}
	if err := rw.Flush(); err != nil {
		return err
	}
	got, err := rw.ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg+"\n" {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// echoServer answers each line with itself over TLS, and records the
// client identities and certificates it saw.
type echoServer struct {
	addr    string
	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	peers   map[string]bool
	serials map[string]bool
	err     error
}

func startEchoServer(t *testing.T, cfg *tls.Config) *echoServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{addr: ln.Addr().String(), ln: ln, peers: map[string]bool{}, serials: map[string]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(conn.(*tls.Conn))
			}()
		}
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *echoServer) serve(conn *tls.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(90 * time.Second))
	if err := conn.Handshake(); err != nil {
		s.fail(fmt.Errorf("handshake: %w", err))
		return
	}
	cs := conn.ConnectionState()
	id, ok := identity.PeerID(cs)
	if !ok {
		s.fail(fmt.Errorf("a client without an identity"))
		return
	}
	s.mu.Lock()
	s.peers[id.String()] = true
	s.serials[cs.PeerCertificates[0].SerialNumber.String()] = true
	s.mu.Unlock()
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if err != io.EOF {
				s.fail(fmt.Errorf("read: %w", err))
			}
			return
		}
		if _, err := io.WriteString(conn, line); err != nil {
			s.fail(fmt.Errorf("write: %w", err))
			return
		}
	}
}

func (s *echoServer) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *echoServer) firstErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// seen returns the client identities and how many client certificates
// the server saw.
func (s *echoServer) seen() (peers []string, serials int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.peers {
		peers = append(peers, p)
	}
	slices.Sort(peers)
	return peers, len(s.serials)
}

// stop closes the listener and waits for the connections being served;
// the clients close theirs.
func (s *echoServer) stop() {
	s.ln.Close()
	s.wg.Wait()
}
