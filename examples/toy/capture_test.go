package toy_test

import (
	"bytes"
	"flag"
	"net"
	"os"
	"sync"
	"testing"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/*.bin from the toy client and server")

// recorder is a net.Conn that keeps what goes each way.
type recorder struct {
	net.Conn
	mu      sync.Mutex
	out, in bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.out.Write(b)
	r.mu.Unlock()
	return r.Conn.Write(b)
}

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	r.in.Write(b[:n])
	r.mu.Unlock()
	return n, err
}

// TestCaptures runs a session between the toy client and server and checks
// that testdata/requests.bin and testdata/answers.bin hold what went each
// way; -update rewrites them. Each frame has at most one header, so the
// bytes do not depend on map order.
func TestCaptures(t *testing.T) {
	s, err := toy.Serve("127.0.0.1:0", func(r *toy.Request) *toy.Response {
		if r.Headers["method"] == "fail" {
			return &toy.Response{Status: 1, Body: []byte("failed")}
		}
		return &toy.Response{Headers: map[string]string{"server": "a"}, Body: append([]byte("hi "), r.Body...)}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Conn: nc}
	c := toy.NewClient(rec)
	defer c.Close()
	must(t, c.Send(map[string]string{"method": "fire"}, nil))
	for _, method := range []string{"hello", "fail", ""} {
		h := map[string]string{"method": method}
		if method == "" {
			h = nil
		}
		if _, err := c.Call(h, []byte("world")); err != nil {
			t.Fatal(err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for file, got := range map[string][]byte{"testdata/requests.bin": rec.out.Bytes(), "testdata/answers.bin": rec.in.Bytes()} {
		if *update {
			must(t, os.WriteFile(file, got, 0o644))
			continue
		}
		want, err := os.ReadFile(file)
		must(t, err)
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the session's traffic (go test -run TestCaptures -update rewrites it)", file)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// captures reads the frames of testdata/<name>.bin.
func captures(t testing.TB, name string) [][]byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name + ".bin")
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	fr := wire.NewReader(bytes.NewReader(b), toy.Codec{})
	for {
		f, err := fr.Next()
		if err != nil {
			break
		}
		frames = append(frames, append([]byte(nil), f...))
	}
	if len(frames) == 0 {
		t.Fatalf("no frames in testdata/%s.bin", name)
	}
	return frames
}
