package lines_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/rosetta-mesh/rosetta/examples/lines"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/codec/codectest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.txt from the reference client and server")

// store is a reference server's handler: a map of keys to values.
func store() lines.Handler {
	var mu sync.Mutex
	kv := map[string]string{}
	return func(w []string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case w[0] == "PING" && len(w) == 1:
			return "PONG", nil
		case w[0] == "SET" && len(w) == 3:
			kv[w[1]] = w[2]
			return "", nil
		case w[0] == "GET" && len(w) == 2:
			if v, ok := kv[w[1]]; ok {
				return v, nil
			}
			return "", fmt.Errorf("no key %s", w[1])
		case w[0] == "DEL" && len(w) == 2:
			delete(kv, w[1])
			return "", nil
		}
		return "", fmt.Errorf("unknown command %s with %d arguments", w[0], len(w)-1)
	}
}

// session is what the captures record, one request and its answer at a
// time.
var session = [][]string{
	{"PING"},
	{"SET", "greeting", "hello"},
	{"GET", "greeting"},
	{"DEL", "greeting"},
	{"GET", "greeting"},
	{"OK"}, // a command, though an answer starts with the same word
	{"SET", "a", "b", "c"},
}

// recorder is a net.Conn that keeps what goes each way.
type recorder struct {
	net.Conn
	out, in bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) { r.out.Write(b); return r.Conn.Write(b) }

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.in.Write(b[:n])
	return n, err
}

// TestCaptures runs the session between the reference client and server
// and checks that testdata/requests.txt and testdata/answers.txt hold what
// went each way; -update rewrites them.
func TestCaptures(t *testing.T) {
	s, err := lines.Serve("127.0.0.1:0", store())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Conn: nc}
	c := lines.NewClient(rec)
	defer c.Close()
	for _, words := range session {
		if _, err := c.Call(words...); err != nil && !errors.As(err, new(*lines.Error)) {
			t.Fatalf("%v: %v", words, err)
		}
	}
	for file, got := range map[string][]byte{"testdata/requests.txt": rec.out.Bytes(), "testdata/answers.txt": rec.in.Bytes()} {
		if *update {
			if err := os.WriteFile(file, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the session's traffic (go test -run TestCaptures -update rewrites it):\n%s", file, got)
		}
	}
}

// captures reads the frames of testdata/<name>.txt, one per line.
func captures(t testing.TB, name string) [][]byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name + ".txt")
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			t.Fatalf("testdata/%s.txt does not end with a newline", name)
		}
		frames, b = append(frames, b[:i+1]), b[i+1:]
	}
	return frames
}

func TestConformance(t *testing.T) {
	p, ok := codec.Lookup(lines.Name)
	if !ok {
		t.Fatalf("%s is not registered", lines.Name)
	}
	codectest.Run(t, codectest.Suite{
		Protocol:  p,
		Requests:  captures(t, "requests"),
		Responses: captures(t, "answers"),
		Oversized: bytes.Repeat([]byte("x"), lines.MaxLine),
		MaxFrame:  lines.MaxLine,
		Mutation:  &codec.Attr{Key: lines.AttrKey, Value: "canary"},
		CheckReply: func(t *testing.T, _ *codec.Message, st codec.Status, reply []byte) {
			// The reference client reads the reply as an ERR answer.
			_, err := lines.NewClient(&conn{r: bytes.NewReader(reply)}).Receive()
			var e *lines.Error
			if !errors.As(err, &e) || !strings.HasPrefix(e.Text, st.String()+": ") {
				t.Fatalf("the client read reply %v as %v", st, err)
			}
		},
	})
}

// conn is a net.Conn that reads from r.
type conn struct {
	net.Conn
	r *bytes.Reader
}

func (c *conn) Read(b []byte) (int, error) { return c.r.Read(b) }

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		opts codec.Options
		err  string
	}{
		{opts: nil},
		{opts: codec.Options{"max_frame_bytes": "64"}},
		{opts: codec.Options{"max_frame_bytes": "63"}, err: "max_frame_bytes"},
		{opts: codec.Options{"max_frame_bytes": "1048577"}, err: "max_frame_bytes"},
		{opts: codec.Options{"max_frame_bytes": "x"}, err: "max_frame_bytes"},
		{opts: codec.Options{"colour": "blue"}, err: `unknown option "colour"`},
	} {
		_, err := lines.New(tc.opts, codec.PeerClient)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(%v) = %v, want an error with %q", tc.opts, err, tc.err)
		}
	}
}

// TestDecode: the same line is a request on a caller's connection and an
// answer on a server's; a request with an empty word comes back with the
// error, so the proxy can answer it.
func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		peer    codec.Peer
		line    string
		kind    codec.Kind
		status  codec.Status
		attrs   map[string]string
		err     error
		partial bool
	}{
		{peer: codec.PeerClient, line: "OK\n", kind: codec.KindRequest, attrs: map[string]string{"command": "OK"}},
		{peer: codec.PeerServer, line: "OK\n", kind: codec.KindResponse, attrs: map[string]string{}},
		{peer: codec.PeerClient, line: "GET k x\n", kind: codec.KindRequest, attrs: map[string]string{"command": "GET", "key": "k"}},
		{peer: codec.PeerServer, line: "ERR no key k\n", kind: codec.KindResponse, status: codec.StatusError, attrs: map[string]string{}},
		{peer: codec.PeerServer, line: "GET k\n", err: codec.ErrMalformed},
		{peer: codec.PeerClient, line: "GET  k\n", err: codec.ErrMalformed, partial: true},
		{peer: codec.PeerClient, line: "\n", err: codec.ErrMalformed, partial: true},
		{peer: codec.PeerClient, line: "GET\nk\n", err: codec.ErrMalformed},
	} {
		c, _ := lines.New(nil, tc.peer)
		m, err := c.Decode([]byte(tc.line))
		if !errors.Is(err, tc.err) || (m != nil) != (tc.err == nil || tc.partial) {
			t.Errorf("%v %q: %v, %v; want %v (partial %v)", tc.peer, tc.line, m, err, tc.err, tc.partial)
			continue
		}
		if m == nil || err != nil {
			continue
		}
		got := map[string]string{}
		m.Attrs.Range(func(k, v string) bool { got[k] = v; return true })
		if m.Kind != tc.kind || m.Status != tc.status || fmt.Sprint(got) != fmt.Sprint(tc.attrs) {
			t.Errorf("%v %q: kind %v status %v attrs %v; want %v %v %v", tc.peer, tc.line, m.Kind, m.Status, got, tc.kind, tc.status, tc.attrs)
		}
	}
}
