package hbone

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/rosetta-mesh/rosetta/pkg/hbone/hbonetest"
)

// FuzzServeConn feeds a server connection, over net.Pipe and after a valid
// client preface, what a caller might send: the frame handling is the
// server's own decoder. Streams to port 20880 are accepted and echoed,
// others refused. Whatever comes, the server must not panic, must end the
// connection once the input ends, and must leave no stream behind.
// testdata/fuzz/FuzzServeConn holds sessions of net/http's client
// (TestCaptureFuzzSeeds writes them).
func FuzzServeConn(f *testing.F) {
	for _, seed := range synthesizedSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		srv, served := fuzzServer()
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			serveRaw(srv, server)
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_, _ = io.WriteString(client, http2.ClientPreface)
		_, _ = client.Write(data)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the connection did not end with its input")
		}
		served.Wait() // every stream's reader saw the end
	})
}

// serveRaw serves an HTTP/2 connection whose TLS is done (or absent).
func serveRaw(srv *Server, nc net.Conn) {
	srv.init()
	newConn(srv, nc, nc, nil, peer{remote: nc.RemoteAddr()}).serve()
}

// fuzzServer accepts streams to port 20880 and echoes them.
func fuzzServer() (*Server, *sync.WaitGroup) {
	var served sync.WaitGroup
	lim := DefaultLimits()
	lim.HandshakeTimeout = time.Second
	lim.WriteTimeout = time.Second
	srv := &Server{
		Limits:  lim,
		Metrics: NewMetrics(prometheus.NewRegistry()),
		Log:     slog.New(slog.DiscardHandler),
		Open: func(r Request) (func(net.Conn), string) {
			if r.Destination.Port() != 20880 {
				return nil, RefusedUnknownAuthority
			}
			return func(nc net.Conn) {
				served.Add(1)
				go func() {
					defer served.Done()
					_, _ = io.Copy(nc, nc)
					nc.Close()
				}()
			}, ""
		},
	}
	return srv, &served
}

// synthesizedSeeds are frame sequences net/http's client does not send:
// split header blocks, padding, window and settings changes, resets,
// refusals.
func synthesizedSeeds() [][]byte {
	var seeds [][]byte
	add := func(write func(fr *http2.Framer, block func(...string) []byte)) {
		var buf, hbuf bytes.Buffer
		fr := http2.NewFramer(&buf, nil)
		enc := hpack.NewEncoder(&hbuf)
		block := func(fields ...string) []byte {
			hbuf.Reset()
			for i := 0; i+1 < len(fields); i += 2 {
				_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
			}
			return bytes.Clone(hbuf.Bytes())
		}
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20})
		write(fr, block)
		seeds = append(seeds, buf.Bytes())
	}
	connect := func(authority string) []string { return []string{":method", "CONNECT", ":authority", authority} }
	add(func(fr *http2.Framer, block func(...string) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(connect(dest)...), EndHeaders: true})
		_ = fr.WriteDataPadded(1, false, []byte("hello"), make([]byte, 20))
		_ = fr.WriteWindowUpdate(1, 1000)
		_ = fr.WriteWindowUpdate(0, 1000)
		_ = fr.WriteData(1, true, []byte("bye"))
	})
	add(func(fr *http2.Framer, block func(...string) []byte) {
		b := block(connect(dest)...)
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:3]})
		_ = fr.WriteContinuation(1, true, b[3:])
		_ = fr.WritePing(false, [8]byte{1})
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		_ = fr.WriteData(1, false, []byte("held"))
		_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
	})
	add(func(fr *http2.Framer, block func(...string) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(connect("10.96.0.9:80")...), EndHeaders: true, EndStream: true})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(":method", "GET", ":scheme", "https", ":path", "/", ":authority", dest), EndHeaders: true, EndStream: true})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: block(connect("greeter:20880")...), EndHeaders: true})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, BlockFragment: block(connect(dest)...), EndHeaders: true, EndStream: true})
		_ = fr.WritePriority(7, http2.PriorityParam{StreamDep: 5, Weight: 10})
		_ = fr.WriteRawFrame(0x20, 0, 7, []byte("unknown"))
		_ = fr.WriteGoAway(7, http2.ErrCodeNo, nil)
	})
	return seeds
}

// TestCaptureFuzzSeeds records what net/http's HTTP/2 client sends after
// the preface in a session with the server (streams accepted, written to
// both ways, half-closed, refused; a request answered 405) and saves it
// under testdata/fuzz/FuzzServeConn when ROSETTA_CAPTURE_FUZZ_SEEDS=1;
// otherwise it runs the sessions and checks the saved seeds are there.
func TestCaptureFuzzSeeds(t *testing.T) {
	write := os.Getenv("ROSETTA_CAPTURE_FUZZ_SEEDS") != ""
	m := newMesh("mesh")
	for name, session := range map[string]func(*testing.T, *hbonetest.Conn){
		"hbonetest-echo":    echoSession(64),
		"hbonetest-large":   echoSession(20 << 10), // past a DATA frame's 16 KiB
		"hbonetest-refused": refusedSession,
	} {
		seed := capture(t, m, session)
		path := filepath.Join("testdata", "fuzz", "FuzzServeConn", name)
		if !write {
			// The sessions ran against the server; the seeds they saved
			// must still be there for the fuzz target.
			if _, err := os.Stat(path); err != nil || len(seed) == 0 {
				t.Fatalf("seed %s (%d bytes captured): %v; ROSETTA_CAPTURE_FUZZ_SEEDS=1 saves it", path, len(seed), err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", seed), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes", path, len(seed))
	}
}

// echoSession sends n bytes on two streams, reads them back and ends them.
func echoSession(n int) func(*testing.T, *hbonetest.Conn) {
	return func(t *testing.T, cc *hbonetest.Conn) {
		for range 2 {
			tn, status, err := cc.Connect(dest)
			if err != nil || status != http.StatusOK {
				t.Fatalf("CONNECT: %d, %v", status, err)
			}
			data := bytes.Repeat([]byte("0123456789abcdef"), n/16)
			go func() { _, _ = tn.Write(data) }()
			if got := readN(t, tn, n); got != string(data) {
				t.Fatal("the echo differs")
			}
			tn.CloseWrite()
			if _, err := io.ReadAll(tn); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func refusedSession(t *testing.T, cc *hbonetest.Conn) {
	for _, authority := range []string{"10.96.0.9:80", "greeter:20880"} {
		if _, status, err := cc.Connect(authority); err != nil || status == http.StatusOK {
			t.Fatalf("CONNECT %s: %d, %v", authority, status, err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "https://"+dest+"/", bytes.NewReader([]byte("body")))
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tn, _, err := cc.Connect(dest)
	if err != nil {
		t.Fatal(err)
	}
	tn.Reset()
}

// capture runs session against a server whose reading is recorded, and
// returns what the client sent after its preface.
func capture(t *testing.T, m *mesh, session func(*testing.T, *hbonetest.Conn)) []byte {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv, _ := fuzzServer()
	rec := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		tc := tls.Server(nc, m.serverTLS(t))
		if tc.Handshake() != nil {
			return
		}
		rec.Conn = tc
		srv.init()
		newConn(srv, nc, rec, nil, peer{remote: nc.RemoteAddr()}).serve()
	}()
	cc, err := hbonetest.Dial(ln.Addr().String(), m.clientTLS(t, callerID, "h2"))
	if err != nil {
		t.Fatal(err)
	}
	session(t, cc)
	time.Sleep(100 * time.Millisecond) // the last frames arrive
	cc.Close()
	<-done
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return bytes.TrimPrefix(rec.buf.Bytes(), []byte(http2.ClientPreface))
}

// recorder keeps what is read through it.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.buf.Write(p[:n])
	r.mu.Unlock()
	return n, err
}
