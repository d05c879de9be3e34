package identity

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// writeFile writes data to name in dir and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// issuingSource is a Source that signs a new certificate for id on every
// Fetch, as a CA does; Fetch fails while fail is set.
type issuingSource struct {
	ca      *identitytest.CA
	id      string
	ttl     time.Duration
	fail    atomic.Bool
	fetches atomic.Int64
}

var errTestCA = errors.New("test CA is down")

func (s *issuingSource) Fetch(context.Context) (*Bundle, error) {
	s.fetches.Add(1)
	if s.fail.Load() {
		return nil, errTestCA
	}
	certPEM, keyPEM := s.ca.Leaf(s.id, s.ttl)
	return NewBundle(certPEM, keyPEM, s.ca.PEM())
}

// staticSource returns the same bundle on every Fetch.
type staticSource struct{ b *Bundle }

func (s staticSource) Fetch(context.Context) (*Bundle, error) { return s.b, nil }

// bundleFor returns a bundle for uri signed by ca, trusting roots.
func bundleFor(t testing.TB, ca *identitytest.CA, uri string, roots []byte) *Bundle {
	t.Helper()
	certPEM, keyPEM := ca.Leaf(uri, time.Hour)
	b, err := NewBundle(certPEM, keyPEM, roots)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startWorkload starts a Workload on src until the test ends.
func startWorkload(t testing.TB, src Source) *Workload {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := NewWorkload(src, quietLog)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))
