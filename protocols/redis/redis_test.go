package redis

import (
	"errors"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// newCodec makes a codec for a connection whose far end is peer: a caller
// (codec.PeerClient: it decodes commands) or a server (codec.PeerServer: it
// decodes answers).
func newCodec(t testing.TB, opts codec.Options, peer codec.Peer) *redisCodec {
	t.Helper()
	c, err := New(opts, peer)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*redisCodec)
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		opts    codec.Options
		wantErr string
	}{
		{opts: nil},
		{opts: codec.Options{OptMode: "cluster", OptPassword: "p", OptUpstreamPassword: "u", OptUpstreamUsername: "n", OptMaxFrameBytes: "1024"}},
		{opts: codec.Options{OptMode: "sentinel"}, wantErr: "mode"},
		{opts: codec.Options{OptMaxFrameBytes: "10"}, wantErr: "max_frame_bytes"},
		{opts: codec.Options{OptMaxMergedBytes: "10"}, wantErr: "max_merged_bytes"},
		{opts: codec.Options{OptMaxMergedBytes: "65536"}},
		{opts: codec.Options{OptUpstreamUsername: "n"}, wantErr: "upstream_password"},
		{opts: codec.Options{"passwd": "x"}, wantErr: `unknown option "passwd"`},
	} {
		_, err := New(tc.opts, codec.PeerClient)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("New(%v) = %v, want error containing %q", tc.opts, err, tc.wantErr)
		}
	}
}

// TestSplit: frames of every RESP2 and RESP3 type, inline commands, and the
// limits on what the wire may claim.
func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		name string
		peer codec.Peer
		in   string
		len  int
		err  error
	}{
		{"simple", codec.PeerServer, "+OK\r\nrest", 5, nil},
		{"error", codec.PeerServer, "-ERR x\r\n", 8, nil},
		{"integer", codec.PeerServer, ":12\r\n", 5, nil},
		{"bulk", codec.PeerServer, "$3\r\nfoo\r\n", 9, nil},
		{"null bulk", codec.PeerServer, "$-1\r\n", 5, nil},
		{"null array", codec.PeerServer, "*-1\r\n", 5, nil},
		{"nested", codec.PeerServer, "*2\r\n*1\r\n:1\r\n$0\r\n\r\n", 18, nil},
		{"resp3 null", codec.PeerServer, "_\r\n", 3, nil},
		{"bool", codec.PeerServer, "#t\r\n", 4, nil},
		{"double", codec.PeerServer, ",1.5\r\n", 6, nil},
		{"big number", codec.PeerServer, "(12345678901234567890\r\n", 23, nil},
		{"verbatim", codec.PeerServer, "=7\r\ntxt:abc\r\n", 13, nil},
		{"blob error", codec.PeerServer, "!3\r\nERR\r\n", 9, nil},
		{"map", codec.PeerServer, "%1\r\n+a\r\n:1\r\n", 12, nil},
		{"set", codec.PeerServer, "~1\r\n+a\r\n", 8, nil},
		{"push", codec.PeerServer, ">2\r\n+a\r\n+b\r\n", 12, nil},
		{"attribute", codec.PeerServer, "|1\r\n+ttl\r\n:3\r\n+OK\r\n", 19, nil},
		{"inline", codec.PeerClient, "GET foo\r\nPING\r\n", 9, nil},
		{"inline lf", codec.PeerClient, "PING\n", 5, nil},
		{"command", codec.PeerClient, "*1\r\n$4\r\nPING\r\n", 14, nil},
		{"bulk too large", codec.PeerServer, "$9000000\r\n", 0, codec.ErrTooLarge},
		{"count too large", codec.PeerServer, "*2000000\r\n", 0, codec.ErrTooLarge},
		{"too deep", codec.PeerServer, strings.Repeat("*1\r\n", 40), 0, codec.ErrTooLarge},
		{"bad length", codec.PeerServer, "$x\r\n", 0, codec.ErrMalformed},
		{"negative", codec.PeerServer, "$-2\r\n", 0, codec.ErrMalformed},
		{"bad type", codec.PeerServer, "@1\r\n", 0, codec.ErrMalformed},
		{"no cr", codec.PeerServer, "+OK\n", 0, codec.ErrMalformed},
		{"bulk without crlf", codec.PeerServer, "$1\r\nab\r\n", 0, codec.ErrMalformed},
		{"long line", codec.PeerClient, strings.Repeat("a", maxLine+2), 0, codec.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := newCodec(t, nil, tc.peer).Split([]byte(tc.in))
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.HasPrefix(err.Error(), "codec/redis: ") {
					t.Fatalf("Split = %+v, %v; want %v", sp, err, tc.err)
				}
				return
			}
			if err != nil || sp.Len != tc.len {
				t.Fatalf("Split = %+v, %v; want Len %d", sp, err, tc.len)
			}
		})
	}
}

func TestDecodeRequests(t *testing.T) {
	for _, tc := range []struct {
		in, command, key string
	}{
		{"*2\r\n$3\r\nget\r\n$3\r\nfoo\r\n", "GET", "foo"},
		{"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n", "MGET", "a"},
		{"*5\r\n$4\r\nEVAL\r\n$1\r\ns\r\n$1\r\n1\r\n$2\r\nk1\r\n$1\r\nx\r\n", "EVAL", "k1"},
		{"*3\r\n$4\r\nEVAL\r\n$1\r\ns\r\n$1\r\n0\r\n", "EVAL", ""},
		{"*4\r\n$5\r\nXREAD\r\n$7\r\nSTREAMS\r\n$2\r\ns1\r\n$1\r\n0\r\n", "XREAD", "s1"},
		{"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n", "BLPOP", "q"},
		{"*3\r\n$6\r\nOBJECT\r\n$8\r\nENCODING\r\n$1\r\nk\r\n", "OBJECT", "k"},
		{"*2\r\n$7\r\nUNKNOWN\r\n$1\r\nk\r\n", "UNKNOWN", "k"},
		{"*1\r\n$4\r\nPING\r\n", "PING", ""},
		{"set 'a b' \"c\"\r\n", "SET", "a b"},
	} {
		m, err := newCodec(t, nil, codec.PeerClient).Decode([]byte(tc.in))
		if err != nil || m.Kind != codec.KindRequest {
			t.Fatalf("Decode(%q) = %v, %v", tc.in, m, err)
		}
		cmd, _ := m.Get(AttrCommand)
		key, ok := m.Get(AttrKey)
		if cmd != tc.command || key != tc.key || ok != (tc.key != "") {
			t.Errorf("Decode(%q): command %q key %q (%v); want %q %q", tc.in, cmd, key, ok, tc.command, tc.key)
		}
	}
	for _, bad := range []string{"*1\r\n:1\r\n", "*1\r\n$-1\r\n", "*2\r\n$3\r\nGET\r\n", "*9\r\n$1\r\na\r\n", "x \"y\r\n"} {
		if _, err := newCodec(t, nil, codec.PeerClient).Decode([]byte(bad)); !errors.Is(err, codec.ErrMalformed) {
			t.Errorf("Decode(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

// TestPeerFixesTheDirection: a Redis frame does not say whether it is a
// command or an answer, so the codec reads its direction from the peer New
// was given, from the first frame on. A codec facing a server decodes an
// array of bulk strings (what MGET, KEYS or SMEMBERS answer) as an answer,
// even one that reads like a command; a codec facing a client decodes
// whatever comes first as a command (redis-server reads "-ERR x" as an
// inline command named "-ERR" too). Encoding changes neither.
func TestPeerFixesTheDirection(t *testing.T) {
	_, answers := captures(t)
	looksLikeCommand := [][]byte{
		[]byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), // KEYS * with keys "GET" and "k"
		[]byte("*1\r\n$4\r\nPING\r\n"),
	}
	for _, a := range answers {
		if a[0] == typeArray && isBulkArray(a) {
			// RESP2's MGET, KEYS, SMEMBERS ("GET"), HGETALL ("SET",
			// "k"), LRANGE ("PING", "x") and BLPOP answers.
			looksLikeCommand = append(looksLikeCommand, a)
		}
	}
	if len(looksLikeCommand) < 2+6 {
		t.Fatalf("the captures hold %d arrays of bulk strings, want 6 at least", len(looksLikeCommand)-2)
	}
	for _, a := range looksLikeCommand {
		up := newCodec(t, nil, codec.PeerServer)
		if sp, err := up.Split(a); err != nil || sp.Len != len(a) {
			t.Fatalf("facing a server, Split(%q) = %+v, %v", a, sp, err)
		}
		m, err := up.Decode(a)
		if err != nil || m.Kind != codec.KindResponse || m.Status != codec.StatusOK {
			t.Fatalf("facing a server, the first frame %q decoded as %v, %v; want an answer", a, m, err)
		}
		if _, ok := m.Private.(*command); ok {
			t.Fatalf("facing a server, the answer %q decoded as a command", a)
		}
	}
	// A server never sends an inline line: facing one, it is malformed.
	if _, err := newCodec(t, nil, codec.PeerServer).Split([]byte("PING\r\n")); !errors.Is(err, codec.ErrMalformed) {
		t.Fatalf("facing a server, a text line split as %v, want ErrMalformed", err)
	}

	for _, tc := range []struct{ in, command string }{
		{"-ERR x\r\n", "-ERR"},
		{"+OK\r\n", "+OK"},
		{":1\r\n", ":1"},
		{"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "GET"},
	} {
		down := newCodec(t, nil, codec.PeerClient)
		sp, err := down.Split([]byte(tc.in))
		if err != nil || sp.Len == 0 {
			t.Fatalf("facing a client, Split(%q) = %+v, %v", tc.in, sp, err)
		}
		m, err := down.Decode([]byte(tc.in)[:sp.Len])
		if err != nil || m.Kind != codec.KindRequest {
			t.Fatalf("facing a client, the first frame %q decoded as %v, %v; want a command", tc.in, m, err)
		}
		if cmd, _ := m.Get(AttrCommand); cmd != tc.command {
			t.Fatalf("facing a client, %q is command %q, want %q", tc.in, cmd, tc.command)
		}
	}
	// An array that is not of bulk strings is a protocol error from a
	// client (the proxy answers it), not an answer.
	if m, err := newCodec(t, nil, codec.PeerClient).Decode([]byte("*1\r\n:1\r\n")); !errors.Is(err, codec.ErrMalformed) || m == nil || m.Kind != codec.KindRequest {
		t.Fatalf("facing a client, an array of integers decoded as %v, %v; want a malformed request", m, err)
	}

	// Encode has no side effects: a codec facing a client that writes a
	// command (a handler's own) still reads commands, and one facing a
	// server still reads answers, pushes apart.
	down, up := newCodec(t, nil, codec.PeerClient), newCodec(t, nil, codec.PeerServer)
	req := newRequest([]byte("GET"), []byte("k"))
	for _, c := range []*redisCodec{down, up} {
		if out, err := c.Encode(nil, req); err != nil || string(out) != string(req.Raw) {
			t.Fatalf("Encode(GET) = %q, %v", out, err)
		}
	}
	if m, _ := down.Decode([]byte("*1\r\n$1\r\na\r\n")); m.Kind != codec.KindRequest {
		t.Fatalf("facing a client after Encode: an array of bulk strings decoded as %v", m.Kind)
	}
	if m, _ := up.Decode([]byte("*1\r\n$1\r\na\r\n")); m.Kind != codec.KindResponse {
		t.Fatalf("facing a server: an array of bulk strings decoded as %v", m.Kind)
	}
	if m, _ := up.Decode([]byte(">2\r\n$7\r\nmessage\r\n$1\r\nx\r\n")); m.Kind != codec.KindOneway {
		t.Fatalf("facing a server: a push decoded as %v", m.Kind)
	}
}

// isBulkArray says whether frame is one array of bulk strings, the shape
// of a command.
func isBulkArray(frame []byte) bool {
	_, err := parseArgs(frame, len(frame), nil)
	return err == nil
}

// TestUpstreamHandshake: a connection to a server opens with what
// Handshake writes (AUTH, then READONLY for replica reads), whose answers
// Decode swallows; Encode never writes it. A refused handshake command ends
// the connection with an error naming it.
func TestUpstreamHandshake(t *testing.T) {
	req := newRequest([]byte("GET"), []byte("k"))
	c := newCodec(t, codec.Options{OptUpstreamPassword: "pw"}, codec.PeerServer)
	if out, _ := c.Encode(nil, req); string(out) != string(req.Raw) {
		t.Fatalf("Encode wrote %q, want the command alone", out)
	}
	if m, _ := c.Decode([]byte("+OK\r\n")); m.Kind != codec.KindResponse {
		t.Fatalf("before Handshake, +OK decoded as %v: Encode counted a handshake", m.Kind)
	}
	out := c.Handshake([]byte("x"))
	if want := "x*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"; string(out) != want {
		t.Fatalf("Handshake wrote %q, want %q", out, want)
	}
	if m, _ := c.Decode([]byte("+OK\r\n")); m.Kind != codec.KindOneway {
		t.Fatalf("AUTH's answer decoded as %v, want it kept from the requests", m.Kind)
	} else if _, ok := m.Private.(handshakeAnswer); !ok {
		t.Fatalf("AUTH's answer is not marked as the handshake's")
	}
	if m, _ := c.Decode([]byte("$1\r\nv\r\n")); m.Kind != codec.KindResponse {
		t.Fatalf("GET's answer decoded as %v", m.Kind)
	}

	c = newCodec(t, codec.Options{OptUpstreamPassword: "bad"}, codec.PeerServer)
	c.Handshake(nil)
	if _, err := c.Decode([]byte("-WRONGPASS no\r\n")); err == nil || !strings.Contains(err.Error(), "refused the proxy's AUTH") {
		t.Fatalf("a refused AUTH: %v", err)
	}

	opts := codec.Options{OptUpstreamPassword: "pw", OptUpstreamUsername: "u", OptMode: ModeCluster, OptReadPolicy: ReadPolicyPreferReplica}
	c = newCodec(t, opts, codec.PeerServer)
	if out, want := c.Handshake(nil), "*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$2\r\npw\r\n*1\r\n$8\r\nREADONLY\r\n"; string(out) != want {
		t.Fatalf("Handshake wrote %q, want %q", out, want)
	}
	if m, err := c.Decode([]byte("+OK\r\n")); err != nil || m.Kind != codec.KindOneway {
		t.Fatalf("AUTH's answer: %v, %v", m, err)
	}
	if _, err := c.Decode([]byte("-ERR no cluster\r\n")); err == nil || !strings.Contains(err.Error(), "refused the proxy's READONLY") {
		t.Fatalf("a refused READONLY: %v", err)
	}

	// Nothing to write: no upstream password, or a codec facing a client.
	if out := newCodec(t, nil, codec.PeerServer).Handshake([]byte("x")); string(out) != "x" {
		t.Fatalf("Handshake without upstream options wrote %q", out)
	}
	down := newCodec(t, codec.Options{OptUpstreamPassword: "pw"}, codec.PeerClient)
	if out := down.Handshake(nil); len(out) != 0 {
		t.Fatalf("Handshake facing a client wrote %q", out)
	}
}

func TestMutations(t *testing.T) {
	c := newCodec(t, nil, codec.PeerClient)
	m, _ := c.Decode([]byte("*5\r\n$4\r\nMSET\r\n$3\r\nb:x\r\n$1\r\n1\r\n$3\r\nb:y\r\n$1\r\n2\r\n"))
	m.Set(AttrStripPrefix, "b:")
	out, _ := newCodec(t, nil, codec.PeerServer).Encode(nil, m)
	if want := "*5\r\n$4\r\nMSET\r\n$1\r\nx\r\n$1\r\n1\r\n$1\r\ny\r\n$1\r\n2\r\n"; string(out) != want {
		t.Fatalf("strip prefix wrote %q, want %q", out, want)
	}
}

func TestReplyPrefixes(t *testing.T) {
	c := newCodec(t, nil, codec.PeerClient)
	req, _ := c.Decode([]byte("PING\r\n"))
	for st, prefix := range errorPrefix {
		rep, _ := c.Reply(req, st, "rosetta: why\r\nnot")
		if want := "-" + prefix + " rosetta: why  not\r\n"; string(rep.Raw) != want {
			t.Errorf("Reply(%v) = %q, want %q", st, rep.Raw, want)
		}
	}
}

func TestMatchGlob(t *testing.T) {
	for _, tc := range []struct {
		p, n string
		ok   bool
	}{{"save", "save", true}, {"*", "save", true}, {"app*", "appendonly", true}, {"*only", "appendonly", true}, {"x*", "save", false}} {
		if matchGlob(tc.p, tc.n) != tc.ok {
			t.Errorf("matchGlob(%q, %q) != %v", tc.p, tc.n, tc.ok)
		}
	}
}
