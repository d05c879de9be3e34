package redis

import (
	"bytes"
	"os"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// FuzzDecode feeds the RESP splitter and decoder, facing a client and facing
// a server, with the captured traffic as seeds: any input must give a frame
// or an error, never a panic or a request to buffer past the limit; what
// decodes must encode, as it is and, for a command, with its key mutated.
// Facing a client every frame is a command (or nothing: an empty line);
// facing a server, never.
func FuzzDecode(f *testing.F) {
	reqs, answers := captures(f)
	for _, fr := range append(reqs, answers...) {
		f.Add(fr)
	}
	extra, _ := os.ReadFile("testdata/requests.resp")
	f.Add(extra)
	f.Add([]byte("|1\r\n+a\r\n:1\r\n%1\r\n~1\r\n>1\r\n=5\r\ntxt:a\r\n"))
	f.Add([]byte("SET a \"b c\"\r\n"))
	// A bare CR inside a line: parseValue once split the line there and
	// panicked on an answer the scanner had accepted.
	f.Add([]byte("*2\r\n#\r0\r\n!1\r\n0\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, peer := range []codec.Peer{codec.PeerClient, codec.PeerServer} {
			c := newCodec(t, nil, peer)
			sp, err := c.Split(in)
			if err != nil {
				continue
			}
			if sp.Len > len(in) || sp.Need > c.opt.maxFrame {
				t.Fatalf("Split = %+v past the input or the limit", sp)
			}
			if sp.Len == 0 {
				continue
			}
			m, err := c.Decode(in[:sp.Len])
			if err != nil {
				continue
			}
			_, isCommand := m.Private.(*command)
			if peer == codec.PeerServer && isCommand || peer == codec.PeerClient && m.Kind != codec.KindRequest && m.Kind != codec.KindUnknown {
				t.Fatalf("facing a %v, %q decoded as %v (a command: %v)", peer, in[:sp.Len], m.Kind, isCommand)
			}
			m.Attrs.Range(func(string, string) bool { return true })
			if _, err := c.Encode(nil, m); err != nil {
				t.Fatalf("Encode of a decoded frame: %v", err)
			}
			if m.Kind == codec.KindRequest {
				// The proxy does not guard Encode: a mutated command
				// must encode too.
				m.Set(AttrStripPrefix, "a")
				m.Set(AttrKey, "fuzz-key")
				if _, err := c.Encode(nil, m); err != nil {
					t.Fatalf("Encode of a mutated command: %v", err)
				}
			}
			if m.Kind == 3 { // a response: the handler parses these
				_, _, _ = parseValue(m.Raw)
			}
		}
	})
}

// FuzzArgsAgreeWithScanner: a command's arguments are read by parseArgs,
// while Split finds its end with the general scanner. parseArgs must accept
// exactly the frames the scanner reads as one whole array of non-null bulk
// strings, and give the same arguments.
func FuzzArgsAgreeWithScanner(f *testing.F) {
	reqs, _ := captures(f)
	for _, fr := range reqs {
		f.Add(fr)
	}
	f.Add([]byte("*0\r\n"))
	f.Add([]byte("*1\r\n$-1\r\n"))
	f.Add([]byte("*2\r\n$3\r\nGET\r\n*1\r\n$1\r\nk\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 || in[0] != typeArray {
			return // parseArgs reads arrays only
		}
		args, err := parseArgs(in, codec.DefaultMaxFrame, nil)
		want, ok := scannedArgs(in)
		if ok != (err == nil) {
			t.Fatalf("%q: parseArgs says %v, the scanner says whole command %v", in, err, ok)
		}
		for i := range want {
			if !bytes.Equal(args[i], want[i]) {
				t.Fatalf("%q: argument %d is %q, the scanner reads %q", in, i, args[i], want[i])
			}
		}
	})
}

// scannedArgs reads in with the scanner and parseValue: its bulk strings,
// when it is one whole array of non-null bulk strings.
func scannedArgs(in []byte) ([][]byte, bool) {
	s := scanner{buf: in, maxFrame: codec.DefaultMaxFrame}
	r, err := s.value(0, 0)
	if err != nil || r.need > 0 || r.end != len(in) {
		return nil, false
	}
	v, _, err := parseValue(in)
	if err != nil || v.t != typeArray || v.null {
		return nil, false
	}
	out := make([][]byte, len(v.elems))
	for i, e := range v.elems {
		if e.t != typeBulk || e.null {
			return nil, false
		}
		out[i] = e.str
	}
	return out, true
}
