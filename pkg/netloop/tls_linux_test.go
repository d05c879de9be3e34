package netloop

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// testTLS is a server config with a fresh self-signed certificate and a
// client config that trusts it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		DNSNames:     []string{"loop.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	client = &tls.Config{RootCAs: pool, ServerName: "loop.test"}
	return server, client
}

// tlsConn connects a TLS client, whose frames c splits, (over wrap(raw socket), when wrap is set)
// and serves the server side, made by TLSServer, on the rig's loop once
// its handshake is done. after, when set, runs on the client between its
// handshake and the server's handing the connection to the loop.
func (r *rig) tlsConn(c codec.Codec, wrap func(net.Conn) net.Conn, after func(*tls.Conn)) (*tls.Conn, *echo) {
	scfg, ccfg := testTLS(r.t)
	client, server := r.accept()
	if wrap != nil {
		client = wrap(client)
	}
	tc := tls.Client(client, ccfg)
	clientDone := make(chan error, 1)
	go func() {
		err := tc.Handshake()
		if err == nil && after != nil {
			after(tc)
		}
		clientDone <- err
	}()
	sc := TLSServer(server, scfg)
	_ = sc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := sc.Handshake(); err != nil {
		r.t.Fatalf("server handshake: %v", err)
	}
	if err := <-clientDone; err != nil {
		r.t.Fatalf("client handshake: %v", err)
	}
	_ = sc.SetDeadline(time.Time{})
	e := &echo{w: wire.NewWriter(sc, wire.Options{Timeout: 5 * time.Second, Max: 64 << 20}), big: bigAnswer, ended: make(chan error, 1)}
	if !r.lp.add(sc, c, e.w, e, Limits{}) {
		r.t.Fatal("the loop refused a TLS connection made by TLSServer")
	}
	r.t.Cleanup(e.w.Close)
	return tc, e
}

// sized frames are a 4-byte big-endian length and that many bytes: a codec
// that knows how much a frame still needs, as real ones do.
type sized struct{ testutil.Lines }

func (sized) Split(b []byte) (codec.Split, error) {
	if len(b) < 4 {
		return codec.Split{Need: 4 - len(b)}, nil
	}
	n := 4 + int(binary.BigEndian.Uint32(b))
	if len(b) < n {
		return codec.Split{Need: n - len(b)}, nil
	}
	return codec.Split{Len: n}, nil
}

func sizedFrame(payload string) string {
	return string(binary.BigEndian.AppendUint32(nil, uint32(len(payload)))) + payload
}

func TestLoopEchoesTLSPipelinesAndFramesAcrossRecords(t *testing.T) {
	r := newRig(t)
	var wg sync.WaitGroup
	for i := range 8 {
		c, _ := r.tlsConn(sized{}, nil, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			var want strings.Builder
			// Many frames in one record.
			for j := range 200 {
				want.WriteString(sizedFrame(strings.Repeat("a", i+j%7)))
			}
			if _, err := io.WriteString(c, want.String()); err != nil {
				t.Error(err)
				return
			}
			// Frames cut across records: each Write is a record of its own.
			split := sizedFrame("split across") + sizedFrame("records")
			for k := 0; k < len(split); k += 5 {
				if _, err := io.WriteString(c, split[k:min(k+5, len(split))]); err != nil {
					t.Error(err)
					return
				}
			}
			want.WriteString(split)
			// A frame of a MiB, many records long.
			large := sizedFrame(strings.Repeat("L", 1<<20))
			if _, err := io.WriteString(c, large); err != nil {
				t.Error(err)
				return
			}
			want.WriteString(large)
			got := make([]byte, want.Len())
			if _, err := io.ReadFull(c, got); err != nil || string(got) != want.String() {
				t.Errorf("connection %d: echoed wrong (%v)", i, err)
			}
		}()
	}
	wg.Wait()
}

func TestLoopWritesLargeTLSAnswersAndStopsOnClose(t *testing.T) {
	r := newRig(t)
	c, e := r.tlsConn(testutil.Lines{}, nil, nil)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	rd := bufio.NewReader(c)
	if _, err := io.WriteString(c, "big\n"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(e.big))
	if _, err := io.ReadFull(rd, got); err != nil || !bytes.Equal(got, e.big) {
		t.Fatalf("the 8 MiB answer came back wrong (%v)", err)
	}
	roundTrip(t, c, rd, "after")
	c.Close() // sends close_notify
	e.endsWith(t, io.EOF)
}

// holdConn lets its first write through (the ClientHello) and keeps the
// rest until flush, so the client's last handshake flight and its first
// request reach the server in one segment.
type holdConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
	held   []byte
}

func (h *holdConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.writes++; h.writes == 1 {
		return h.Conn.Write(p)
	}
	h.held = append(h.held, p...)
	return len(p), nil
}

func (h *holdConn) flush() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.Conn.Write(h.held)
	h.held = nil
	h.writes = 0 // from now on writes go straight through
	return err
}

func TestLoopReadsRequestsThatCameWithTheHandshake(t *testing.T) {
	r := newRig(t)
	var hc *holdConn
	c, _ := r.tlsConn(testutil.Lines{}, func(nc net.Conn) net.Conn {
		hc = &holdConn{Conn: nc}
		return hc
	}, func(tc *tls.Conn) {
		// TLS 1.3: the client's Finished and this request arrive together,
		// so the server's handshake reads the request too.
		_, _ = io.WriteString(tc, "first\nsecond\n")
		_ = hc.flush()
	})
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("negotiated %x, want TLS 1.3", v)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	rd := bufio.NewReader(c)
	for _, want := range []string{"first\n", "second\n"} {
		if got, err := rd.ReadString('\n'); err != nil || got != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	roundTrip(t, c, rd, "third")
}

func TestSlowTLSReaderDoesNotStallTheLoop(t *testing.T) {
	r := newRig(t)
	slow, _ := r.tlsConn(testutil.Lines{}, nil, nil)
	// Answers of 8 MiB that the client never reads fill both socket
	// buffers; the rest waits off the loop, which goes on serving others.
	for range 4 {
		if _, err := io.WriteString(slow, "big\n"); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := r.tlsConn(testutil.Lines{}, nil, nil)
	rd := bufio.NewReader(c)
	for i := range 50 {
		roundTrip(t, c, rd, "ping"+strings.Repeat("!", i))
	}
}
