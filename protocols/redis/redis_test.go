package redis

import (
	"errors"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

func newCodec(t testing.TB, opts codec.Options, side int32) *redisCodec {
	t.Helper()
	c, err := New(opts, codec.PeerClient)
	if err != nil {
		t.Fatal(err)
	}
	rc := c.(*redisCodec)
	rc.side.Store(side)
	return rc
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
		side int32
		in   string
		len  int
		err  error
	}{
		{"simple", sideClient, "+OK\r\nrest", 5, nil},
		{"error", sideClient, "-ERR x\r\n", 8, nil},
		{"integer", sideClient, ":12\r\n", 5, nil},
		{"bulk", sideClient, "$3\r\nfoo\r\n", 9, nil},
		{"null bulk", sideClient, "$-1\r\n", 5, nil},
		{"null array", sideClient, "*-1\r\n", 5, nil},
		{"nested", sideClient, "*2\r\n*1\r\n:1\r\n$0\r\n\r\n", 18, nil},
		{"resp3 null", sideClient, "_\r\n", 3, nil},
		{"bool", sideClient, "#t\r\n", 4, nil},
		{"double", sideClient, ",1.5\r\n", 6, nil},
		{"big number", sideClient, "(12345678901234567890\r\n", 23, nil},
		{"verbatim", sideClient, "=7\r\ntxt:abc\r\n", 13, nil},
		{"blob error", sideClient, "!3\r\nERR\r\n", 9, nil},
		{"map", sideClient, "%1\r\n+a\r\n:1\r\n", 12, nil},
		{"set", sideClient, "~1\r\n+a\r\n", 8, nil},
		{"push", sideClient, ">2\r\n+a\r\n+b\r\n", 12, nil},
		{"attribute", sideClient, "|1\r\n+ttl\r\n:3\r\n+OK\r\n", 19, nil},
		{"inline", sideServer, "GET foo\r\nPING\r\n", 9, nil},
		{"inline lf", sideServer, "PING\n", 5, nil},
		{"command", sideServer, "*1\r\n$4\r\nPING\r\n", 14, nil},
		{"bulk too large", sideClient, "$9000000\r\n", 0, codec.ErrTooLarge},
		{"count too large", sideClient, "*2000000\r\n", 0, codec.ErrTooLarge},
		{"too deep", sideClient, strings.Repeat("*1\r\n", 40), 0, codec.ErrTooLarge},
		{"bad length", sideClient, "$x\r\n", 0, codec.ErrMalformed},
		{"negative", sideClient, "$-2\r\n", 0, codec.ErrMalformed},
		{"bad type", sideClient, "@1\r\n", 0, codec.ErrMalformed},
		{"no cr", sideClient, "+OK\n", 0, codec.ErrMalformed},
		{"bulk without crlf", sideClient, "$1\r\nab\r\n", 0, codec.ErrMalformed},
		{"long line", sideServer, strings.Repeat("a", maxLine+2), 0, codec.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := newCodec(t, nil, tc.side).Split([]byte(tc.in))
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
		m, err := newCodec(t, nil, sideServer).Decode([]byte(tc.in))
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
		if _, err := newCodec(t, nil, sideServer).Decode([]byte(bad)); !errors.Is(err, codec.ErrMalformed) {
			t.Errorf("Decode(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

// TestSides: a fresh codec tells commands from answers by shape, and once
// it encodes a command it reads only answers.
func TestSides(t *testing.T) {
	c := newCodec(t, nil, sideUnknown)
	if m, _ := c.Decode([]byte("-ERR x\r\n")); m.Kind != codec.KindResponse || m.Status != codec.StatusError {
		t.Fatalf("fresh codec on an error: %v %v", m.Kind, m.Status)
	}
	req := newRequest([]byte("GET"), []byte("k"))
	if _, err := c.Encode(nil, req); err != nil {
		t.Fatal(err)
	}
	if m, _ := c.Decode([]byte("*1\r\n$1\r\na\r\n")); m.Kind != codec.KindResponse {
		t.Fatalf("client side: an array of bulk strings decoded as %v", m.Kind)
	}
	if m, _ := c.Decode([]byte(">2\r\n$7\r\nmessage\r\n$1\r\nx\r\n")); m.Kind != codec.KindOneway {
		t.Fatalf("client side: a push decoded as %v", m.Kind)
	}
}

// TestUpstreamHandshake: the first command on a connection to a server is
// preceded by AUTH, whose answer is swallowed; a refused AUTH ends the
// connection with a clear error.
func TestUpstreamHandshake(t *testing.T) {
	c := newCodec(t, codec.Options{OptUpstreamPassword: "pw"}, sideUnknown)
	req := newRequest([]byte("GET"), []byte("k"))
	out, _ := c.Encode(nil, req)
	out, _ = c.Encode(out, req)
	want := "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n" + string(req.Raw) + string(req.Raw)
	if string(out) != want {
		t.Fatalf("Encode wrote %q, want %q", out, want)
	}
	if m, _ := c.Decode([]byte("+OK\r\n")); m.Kind != codec.KindOneway {
		t.Fatalf("AUTH's answer decoded as %v, want it kept from the requests", m.Kind)
	}
	if m, _ := c.Decode([]byte("$1\r\nv\r\n")); m.Kind != codec.KindResponse {
		t.Fatalf("GET's answer decoded as %v", m.Kind)
	}
	c = newCodec(t, codec.Options{OptUpstreamPassword: "bad"}, sideUnknown)
	_, _ = c.Encode(nil, req)
	if _, err := c.Decode([]byte("-WRONGPASS no\r\n")); err == nil || !strings.Contains(err.Error(), "AUTH") {
		t.Fatalf("a refused AUTH: %v", err)
	}
}

func TestMutations(t *testing.T) {
	c := newCodec(t, nil, sideServer)
	m, _ := c.Decode([]byte("*5\r\n$4\r\nMSET\r\n$3\r\nb:x\r\n$1\r\n1\r\n$3\r\nb:y\r\n$1\r\n2\r\n"))
	m.Set(AttrStripPrefix, "b:")
	out, _ := newCodec(t, nil, sideUnknown).Encode(nil, m)
	if want := "*5\r\n$4\r\nMSET\r\n$1\r\nx\r\n$1\r\n1\r\n$1\r\ny\r\n$1\r\n2\r\n"; string(out) != want {
		t.Fatalf("strip prefix wrote %q, want %q", out, want)
	}
}

func TestReplyPrefixes(t *testing.T) {
	c := newCodec(t, nil, sideServer)
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
