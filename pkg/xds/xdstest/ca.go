// Package xdstest helps test xDS security, as net/http/httptest helps test
// HTTP: a certificate authority made in the test that issues mesh
// certificates (a SPIFFE URI SAN, as istiod issues them) and serving
// certificates (a DNS name), in memory or as files.
package xdstest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
)

// CA is a certificate authority made in the test (identitytest's, with
// the shapes xDS tests need).
type CA struct{ *identitytest.CA }

// NewCA makes a self-signed root CA named name, valid for a day.
func NewCA(t testing.TB, name string) *CA { return &CA{identitytest.NewCA(name)} }

// RootPEM is the CA's certificate, PEM-encoded.
func (ca *CA) RootPEM() []byte { return ca.PEM() }

// Mesh issues a workload certificate for the SPIFFE ID uri
// ("spiffe://cluster.local/ns/NS/sa/SA"), for server and client auth as
// istiod issues them, valid for an hour. It returns the certificate and
// its key, PEM-encoded.
func (ca *CA) Mesh(t testing.TB, uri string) (certPEM, keyPEM []byte) {
	return ca.Leaf(uri, time.Hour)
}

// Serving issues a server certificate for the DNS name dns (and the
// loopback addresses), valid for an hour, as cert-manager would for a
// controller whose serving certificate is not a mesh one.
func (ca *CA) Serving(t testing.TB, dns string) (certPEM, keyPEM []byte) {
	key := identitytest.NewKey()
	return identitytest.CertPEM(ca.CA.Serving(key.Public(), dns)), identitytest.KeyPEM(key)
}

// Workload returns a started identity.Workload holding a mesh certificate
// for uri and trusting this CA, as a proxy or controller with an Istio
// identity has. It stops rotating when the test ends.
func (ca *CA) Workload(t testing.TB, uri string) *identity.Workload {
	t.Helper()
	certPEM, keyPEM := ca.Mesh(t, uri)
	b, err := identity.NewBundle(certPEM, keyPEM, ca.RootPEM())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := identity.NewWorkload(staticSource{b}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

// staticSource returns the same bundle on every Fetch.
type staticSource struct{ b *identity.Bundle }

func (s staticSource) Fetch(context.Context) (*identity.Bundle, error) { return s.b, nil }

// WriteFile writes data to a file named name in a folder of the test's
// and returns its path.
func WriteFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
