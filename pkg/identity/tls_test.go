package identity

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
)

const (
	greeterURI  = "spiffe://cluster.local/ns/shop/sa/greeter"
	frontendURI = "spiffe://cluster.local/ns/web/sa/frontend"
	sni         = "outbound_.20880_._.greeter.shop.svc.cluster.local"
)

// handshake runs both sides of a TLS handshake over loopback TCP and
// returns both connections with their handshake errors. Each side closes
// its socket when its handshake fails, so the other never waits on it.
func handshake(t *testing.T, client, server *tls.Config) (cc, sc *tls.Conn, cerr, serr error) {
	t.Helper()
	a, b := testutil.TCPPair(t)
	deadline := time.Now().Add(30 * time.Second)
	_ = a.SetDeadline(deadline) // a deadline on a fresh socket does not fail
	_ = b.SetDeadline(deadline)
	cc, sc = tls.Client(a, client), tls.Server(b, server)
	done := make(chan error, 1)
	go func() {
		err := sc.Handshake()
		if err != nil {
			b.Close()
		}
		done <- err
	}()
	if cerr = cc.Handshake(); cerr != nil {
		a.Close()
	}
	return cc, sc, cerr, <-done
}

// rawClient is a TLS client that presents cert (none when nil) and checks
// nothing, to test what the server refuses. It presents cert even when the
// server's CertificateRequest names other CAs (Go's Certificates field
// would then send none), as an attacker would.
func rawClient(cert *tls.Certificate) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true,
		NextProtos:         ClientALPN,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert == nil {
				return &tls.Certificate{}, nil
			}
			return cert, nil
		},
	}
}

func TestMutualTLS(t *testing.T) {
	ca, other := identitytest.NewCA("mesh"), identitytest.NewCA("other")
	greeter := startWorkload(t, staticSource{bundleFor(t, ca, greeterURI, ca.PEM())})
	frontend := startWorkload(t, staticSource{bundleFor(t, ca, frontendURI, ca.PEM())})
	outsider := startWorkload(t, staticSource{bundleFor(t, ca, "spiffe://other.domain/ns/shop/sa/greeter", ca.PEM())})
	impostor := startWorkload(t, staticSource{bundleFor(t, other, greeterURI, other.PEM())})
	unstarted := NewWorkload(staticSource{}, quietLog)
	offersMxcFirst := ClientConfig(frontend, []string{greeterURI}, sni)
	offersMxcFirst.NextProtos = []string{"istio-peer-exchange", "istio"}
	tls12 := ClientConfig(frontend, []string{greeterURI}, sni)
	tls12.MaxVersion = tls.VersionTLS12

	for _, tc := range []struct {
		name              string
		client            *tls.Config
		server            *Workload
		clientErr, srvErr string // parts of the errors; empty means success
	}{
		{name: "expected SAN", client: ClientConfig(frontend, []string{"spiffe://x/ns/a/sa/b", greeterURI}, sni), server: greeter},
		{name: "no SANs, same trust domain", client: ClientConfig(frontend, nil, sni), server: greeter},
		{name: "client offers istio-peer-exchange first", client: offersMxcFirst, server: greeter},
		{name: "TLS 1.2", client: tls12, server: greeter},
		{name: "wrong SAN", client: ClientConfig(frontend, []string{"spiffe://cluster.local/ns/shop/sa/cart"}, sni), server: greeter,
			clientErr: "server spiffe://cluster.local/ns/shop/sa/greeter is none of", srvErr: "bad certificate"},
		{name: "no SANs, other trust domain", client: ClientConfig(frontend, nil, sni), server: outsider,
			clientErr: `not in trust domain "cluster.local"`, srvErr: "bad certificate"},
		{name: "server from another CA with the right SAN", client: ClientConfig(frontend, []string{greeterURI}, sni), server: impostor,
			clientErr: "certificate signed by unknown authority", srvErr: "bad certificate"},
		{name: "client certificate from another CA", client: rawClient(&impostor.Current().Cert), server: greeter,
			srvErr: "certificate signed by unknown authority"},
		{name: "client without certificate", client: rawClient(nil), server: greeter,
			srvErr: "client didn't provide a certificate"},
		{name: "client not started", client: ClientConfig(unstarted, nil, sni), server: greeter,
			clientErr: "no certificate yet", srvErr: "bad certificate"},
		{name: "server not started", client: ClientConfig(frontend, nil, sni), server: unstarted,
			clientErr: "internal error", srvErr: "no certificate yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc, cerr, serr := handshake(t, tc.client, ServerConfig(tc.server))
			checkErr(t, "client", cerr, tc.clientErr)
			checkErr(t, "server", serr, tc.srvErr)
			if tc.clientErr == "" && tc.srvErr == "" {
				checkSession(t, cc, sc, tc.server.Current().ID, frontend.Current().ID)
			}
		})
	}
}

func checkErr(t *testing.T, side string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s handshake: %v", side, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("%s handshake error = %v, want one with %q", side, err, want)
	}
}

// checkSession checks what each side learned of the other, and that bytes
// pass both ways.
func checkSession(t *testing.T, cc, sc *tls.Conn, serverID, clientID ID) {
	t.Helper()
	cs, ss := cc.ConnectionState(), sc.ConnectionState()
	if id, ok := PeerID(cs); !ok || id != serverID {
		t.Errorf("client sees PeerID %v, %v; want %v", id, ok, serverID)
	}
	if id, ok := PeerID(ss); !ok || id != clientID {
		t.Errorf("server sees PeerID %v, %v; want %v", id, ok, clientID)
	}
	if cs.NegotiatedProtocol != "istio" || ss.NegotiatedProtocol != "istio" {
		t.Errorf("ALPN client %q server %q, want istio", cs.NegotiatedProtocol, ss.NegotiatedProtocol)
	}
	if ss.ServerName != sni {
		t.Errorf("server saw SNI %q, want %q", ss.ServerName, sni)
	}
	go func() { _, _ = io.Copy(sc, sc) }() // echo until the client closes
	echo(t, cc)
}

// echo writes a line on c and checks that it comes back.
func echo(t *testing.T, c net.Conn) {
	t.Helper()
	const msg = "ping\n"
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("read %q, %v; want %q", buf, err, msg)
	}
}
