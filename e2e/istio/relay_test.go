package istio

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
)

// relay stands in for a sidecar: it forwards every connection it accepts
// over a connection of its own, byte for byte. Its inbound side is
// plaintext or Istio mutual TLS (recording each caller's SPIFFE ID); its
// outbound side is whatever dial makes. It records the peer's leaf
// certificate of every TLS handshake it makes, either side.
type relay struct {
	Addr string
	ln   net.Listener
	// in, when set, terminates TLS on accepted connections.
	in   *tls.Config
	dial func() (net.Conn, error)

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]bool
	peers []string
	// leaves are the peers' leaf certificates, one per handshake, in order.
	leaves []*x509.Certificate
	// ended counts the accepted connections that are over, for whatever
	// reason: closed by either side, or a failed handshake or dial.
	ended int
	// failures are handshakes and dials that failed, for messages.
	failures []string
}

// relayHandshakeTimeout bounds a relay's TLS handshakes and dials.
const relayHandshakeTimeout = 10 * time.Second

// startRelay listens on a loopback port no server of this test process had
// before (dubbo-go keeps one connection set per address for the whole
// process) and relays until the test ends.
func startRelay(t *testing.T, what string, in *tls.Config, dial func() (net.Conn, error)) *relay {
	t.Helper()
	return dubbokit.OnFreshPort(t, what, func() (*relay, string) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		r := &relay{Addr: ln.Addr().String(), ln: ln, in: in, dial: dial, conns: map[net.Conn]bool{}}
		r.wg.Add(1)
		go r.accept()
		t.Cleanup(r.stop)
		return r, r.Addr
	})
}

// mtlsTerminator is a provider's sidecar: Istio mTLS in, with w's
// certificate, plaintext out to upstream.
func mtlsTerminator(t *testing.T, w *identity.Workload, upstream string) *relay {
	t.Helper()
	return startRelay(t, "mTLS terminator for "+upstream, identity.ServerConfig(w), func() (net.Conn, error) {
		return net.DialTimeout("tcp", upstream, relayHandshakeTimeout)
	})
}

// mtlsOriginator is a caller's sidecar: plaintext in, Istio mTLS out to
// upstream with w's certificate, ALPN "istio", the server's identity one
// of serverIDs.
func mtlsOriginator(t *testing.T, w *identity.Workload, upstream string, serverIDs ...string) *relay {
	t.Helper()
	cfg := identity.ClientConfig(w, serverIDs, "")
	return startRelay(t, "mTLS originator to "+upstream, nil, func() (net.Conn, error) {
		d := &net.Dialer{Timeout: relayHandshakeTimeout}
		return tls.DialWithDialer(d, "tcp", upstream, cfg)
	})
}

// passThrough relays plaintext to upstream unchanged: a caller without a
// sidecar. It only gives each dubbo-go consumer an address of its own.
func passThrough(t *testing.T, upstream string) *relay {
	t.Helper()
	return startRelay(t, "pass-through to "+upstream, nil, func() (net.Conn, error) {
		return net.DialTimeout("tcp", upstream, relayHandshakeTimeout)
	})
}

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		nc, err := r.ln.Accept()
		if err != nil {
			return
		}
		if !r.track(nc) {
			nc.Close()
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer r.untrack(nc)
			r.serve(nc)
			r.mu.Lock()
			r.ended++
			r.mu.Unlock()
		}()
	}
}

func (r *relay) serve(nc net.Conn) {
	down := nc
	if r.in != nil {
		tc := tls.Server(nc, r.in)
		_ = tc.SetDeadline(time.Now().Add(relayHandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			r.fail(fmt.Errorf("handshake with %s: %w", nc.RemoteAddr(), err))
			nc.Close()
			return
		}
		_ = tc.SetDeadline(time.Time{})
		id, ok := identity.PeerID(tc.ConnectionState())
		if !ok {
			r.fail(fmt.Errorf("%s has no SPIFFE ID", nc.RemoteAddr()))
			nc.Close()
			return
		}
		r.mu.Lock()
		r.peers = append(r.peers, id.String())
		r.mu.Unlock()
		r.handshook(tc)
		down = tc
	}
	up, err := r.dial()
	if err != nil {
		r.fail(fmt.Errorf("dial: %w", err))
		down.Close()
		return
	}
	if tc, ok := up.(*tls.Conn); ok { // dial made the handshake
		r.handshook(tc)
	}
	if !r.track(up) {
		up.Close()
		down.Close()
		return
	}
	defer r.untrack(up)
	// Dubbo is request and answer on long-lived connections: when either
	// side ends, both do.
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src) // an error ends the connection, as EOF does
		done <- struct{}{}
	}
	go cp(up, down)
	go cp(down, up)
	<-done
	down.Close()
	up.Close()
	<-done
}

// track adds a connection stop must close; false once the relay stopped.
func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		return false
	}
	r.conns[c] = true
	return true
}

func (r *relay) untrack(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
}

// handshook records the peer's leaf certificate of a finished handshake.
func (r *relay) handshook(tc *tls.Conn) {
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leaves = append(r.leaves, certs[0])
}

func (r *relay) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, err.Error())
}

// callers returns the distinct SPIFFE IDs of the TLS clients accepted so
// far, sorted.
func (r *relay) callers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.peers)
	slices.Sort(out)
	return slices.Compact(out)
}

// peerLeaves returns the peers' leaf certificates of the TLS handshakes so
// far, in order: the callers' for a terminator, the upstream's for an
// originator.
func (r *relay) peerLeaves() []*x509.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.leaves)
}

// endedConns returns how many accepted connections are over.
func (r *relay) endedConns() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ended
}

// failed returns the failed handshakes and dials so far.
func (r *relay) failed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.failures)
}

// stop closes the listener and every connection, and waits for the
// relay's goroutines.
func (r *relay) stop() {
	r.ln.Close()
	r.mu.Lock()
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	r.wg.Wait()
}
