package dubbopeer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
)

const (
	consumerID = "spiffe://cluster.local/ns/shop/sa/frontend"
	providerID = "spiffe://cluster.local/ns/demo/sa/greeter"
)

// mutualTLS returns the configs of a consumer and a provider with
// certificates of one test CA, each requiring the other's certificate and
// accepting only the other's SPIFFE ID; the consumer's certificate is for
// consumerURI.
func mutualTLS(t *testing.T, ca *identitytest.CA, consumerURI string) (consumer, provider *tls.Config) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM())
	cert := func(uri string) tls.Certificate {
		c, err := tls.X509KeyPair(ca.Leaf(uri, time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	consumer = &tls.Config{
		Certificates: []tls.Certificate{cert(consumerURI)},
		// The names are SPIFFE URIs, which crypto/tls does not check;
		// verifyPeer checks the chain and the name.
		InsecureSkipVerify: true,
		VerifyConnection:   verifyPeer(roots, providerID),
	}
	provider = &tls.Config{
		Certificates:     []tls.Certificate{cert(providerID)},
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: verifyPeer(roots, consumerID),
	}
	return consumer, provider
}

func verifyPeer(roots *x509.CertPool, uri string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no peer certificate")
		}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return err
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != uri {
			return fmt.Errorf("peer is %v, want %s", leaf.URIs, uri)
		}
		return nil
	}
}

// serveTLS starts a provider with handler h on a TLS listener.
func serveTLS(t *testing.T, cfg *tls.Config, h Handler) *Provider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ServeListener(tls.NewListener(ln, cfg), "p1", h)
	t.Cleanup(func() { p.Close() })
	return p
}

// TestTLS: over a mutual TLS connection, calls carry their requests to the
// provider and the answers back, concurrently, with frames over a TLS
// record in both directions; so do prepared calls, heartbeats and oneway
// calls.
func TestTLS(t *testing.T) {
	consumerTLS, providerTLS := mutualTLS(t, identitytest.NewCA("test"), consumerID)
	seen := make(chan *Request, 1)
	p := serveTLS(t, providerTLS, func(ctx context.Context, req *Request) (any, error) {
		if req.Oneway {
			seen <- req
			return nil, nil
		}
		return echo("p1")(ctx, req)
	})
	nc, err := tls.Dial("tcp", p.Addr(), consumerTLS)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConsumer(nc)
	t.Cleanup(func() { c.Close() })
	ctx := ctxT(t)

	// 64 KiB each way: several TLS records per frame.
	big := strings.Repeat("x", 64<<10)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arg := fmt.Sprint(i, big)
			v, atts, err := c.Call(ctx, greeter, "sayHello", []any{arg}, nil)
			if err == nil && (v != fmt.Sprintf("sayHello[%s] from p1", arg) || ProviderName(atts) != "p1") {
				err = fmt.Errorf("call %d got a wrong answer from %q", i, ProviderName(atts))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var ex *Exception
	if _, _, err := c.Call(ctx, greeter, "fail", nil, nil); !errors.As(err, &ex) || ex.Message != "it broke" {
		t.Fatalf("fail: got %v, want an exception 'it broke'", err)
	}
	prep, err := Prepare(greeter, "sayHello", []any{big}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CallPrepared(ctx, prep); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(greeter, "notify", []any{"x"}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-seen:
		if req.Method != "notify" {
			t.Fatalf("provider saw %+v", req)
		}
	case <-ctx.Done():
		t.Fatal("oneway call never arrived")
	}
	if cs := nc.ConnectionState(); !cs.HandshakeComplete || cs.PeerCertificates[0].URIs[0].String() != providerID {
		t.Fatalf("connection state %+v, want a handshake with %s", cs, providerID)
	}
}

// TestTLSRefusesOtherIdentities: a consumer the provider does not accept
// gets no call through, and the provider keeps serving others.
func TestTLSRefusesOtherIdentities(t *testing.T) {
	ca := identitytest.NewCA("test")
	consumerTLS, providerTLS := mutualTLS(t, ca, consumerID)
	strangerTLS, _ := mutualTLS(t, ca, "spiffe://cluster.local/ns/shop/sa/stranger")
	p := serveTLS(t, providerTLS, echo("p1"))

	raw, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	stranger := NewConsumer(tls.Client(raw, strangerTLS))
	t.Cleanup(func() { stranger.Close() })
	if _, _, err := stranger.Call(ctxT(t), greeter, "sayHello", nil, nil); err == nil {
		t.Fatal("a consumer with another identity made a call")
	}
	if p.Calls() != 0 {
		t.Fatalf("the provider served %d calls from a refused consumer", p.Calls())
	}

	nc, err := tls.Dial("tcp", p.Addr(), consumerTLS)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConsumer(nc)
	t.Cleanup(func() { c.Close() })
	if _, _, err := c.Call(ctxT(t), greeter, "sayHello", nil, nil); err != nil {
		t.Fatal(err)
	}
}
