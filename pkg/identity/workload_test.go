package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
)

func TestRotationKeepsOpenConnections(t *testing.T) {
	ca := identitytest.NewCA("mesh")
	src := &issuingSource{ca: ca, id: greeterURI, ttl: 2 * time.Second}
	server := startWorkload(t, src)
	client := startWorkload(t, staticSource{bundleFor(t, ca, frontendURI, ca.PEM())})
	addr := testutil.Accept(t, func(nc net.Conn) {
		c := tls.Server(nc, ServerConfig(server))
		defer c.Close()
		_, _ = io.Copy(c, c) // echo until the client closes
	})

	before := dialTLS(t, addr, ClientConfig(client, []string{greeterURI}, sni))
	echo(t, before)
	first := before.ConnectionState().PeerCertificates[0]

	// Wait until the certificate of that connection has expired and been
	// replaced.
	testutil.Eventually(t, 15*time.Second, "two rotations, past the first certificate's expiry", func() bool {
		return server.Rotations() >= 2 && time.Now().After(first.NotAfter) &&
			!server.Current().Cert.Leaf.Equal(first)
	})
	echo(t, before) // still open, on its expired certificate

	after := dialTLS(t, addr, ClientConfig(client, []string{greeterURI}, sni))
	echo(t, after)
	leaf := after.ConnectionState().PeerCertificates[0]
	if leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Errorf("new handshake presented the first certificate (serial %s) again", first.SerialNumber)
	}
	if time.Now().After(leaf.NotAfter) {
		t.Errorf("new handshake presented an expired certificate")
	}
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRotationRetriesFailures(t *testing.T) {
	src := &issuingSource{ca: identitytest.NewCA("mesh"), id: greeterURI, ttl: 2 * time.Second}
	w := NewWorkload(src, quietLog)
	w.retryMin, w.retryMax = 10*time.Millisecond, 40*time.Millisecond
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	src.fail.Store(true)
	testutil.Eventually(t, 10*time.Second, "three failed renewals", func() bool { return src.fetches.Load() >= 4 })
	if n := w.Rotations(); n != 0 {
		t.Fatalf("Rotations() = %d while the source fails, want 0", n)
	}
	src.fail.Store(false)
	testutil.Eventually(t, 10*time.Second, "a rotation once the source recovers", func() bool { return w.Rotations() >= 1 })
}

func TestRotationSkipsUnchangedCertificate(t *testing.T) {
	ca := identitytest.NewCA("mesh")
	certPEM, keyPEM := ca.Leaf(greeterURI, 2*time.Second)
	b, err := NewBundle(certPEM, keyPEM, ca.PEM())
	if err != nil {
		t.Fatal(err)
	}
	src := &countingSource{Source: staticSource{b}}
	w := NewWorkload(src, quietLog)
	w.retryMin, w.retryMax = 10*time.Millisecond, 40*time.Millisecond
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the source read again", func() bool { return src.fetches.Load() >= 4 })
	if n := w.Rotations(); n != 0 {
		t.Errorf("Rotations() = %d for the same certificate, want 0", n)
	}
}

// countingSource counts the fetches of the Source it wraps.
type countingSource struct {
	Source
	fetches atomic.Int64
}

func (s *countingSource) Fetch(ctx context.Context) (*Bundle, error) {
	s.fetches.Add(1)
	return s.Source.Fetch(ctx)
}

func TestStart(t *testing.T) {
	src := &issuingSource{ca: identitytest.NewCA("mesh"), id: greeterURI, ttl: time.Hour}
	src.fail.Store(true)
	w := NewWorkload(src, quietLog)
	if err := w.Start(t.Context()); !errors.Is(err, errTestCA) || w.Current() != nil {
		t.Fatalf("Start with a failing source = %v, Current() = %v; want the source's error and nil", err, w.Current())
	}
	src.fail.Store(false)
	if err := w.Start(t.Context()); err != nil || w.Current() == nil || w.Current().ID.String() != greeterURI {
		t.Fatalf("Start again = %v, Current() = %v; want %s", err, w.Current(), greeterURI)
	}
	if err := w.Start(t.Context()); err == nil {
		t.Errorf("a second successful Start did not fail")
	}
}

func TestRefreshDelay(t *testing.T) {
	now := time.Now()
	for range 100 {
		if d := refreshDelay(now.Add(2*time.Hour), now); d > time.Hour || d < 57*time.Minute {
			t.Fatalf("refreshDelay with 2h left = %v, want half less at most 5%%", d)
		}
	}
	if d := refreshDelay(now.Add(-time.Second), now); d != 0 {
		t.Errorf("refreshDelay of an expired certificate = %v, want 0", d)
	}
}

func TestRetryDelay(t *testing.T) {
	for _, tc := range []struct{ backoff, left, want time.Duration }{
		{8 * time.Second, time.Hour, 8 * time.Second},
		{8 * time.Second, 3 * time.Second, 3 * time.Second}, // one try before expiry
		{8 * time.Second, -time.Second, 8 * time.Second},    // expired: keep the backoff
	} {
		if got := retryDelay(tc.backoff, tc.left); got != tc.want {
			t.Errorf("retryDelay(%v, %v) = %v, want %v", tc.backoff, tc.left, got, tc.want)
		}
	}
}
