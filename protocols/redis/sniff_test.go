package redis

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// TestSniffCapturedCommands: every command go-redis sent in the captures
// (RESP2 and RESP3, handshakes, transactions, pub/sub, cluster) is a sure
// match once "*<count>\r\n$" has arrived, and not yet sure before.
func TestSniffCapturedCommands(t *testing.T) {
	c := newCodec(t, nil, codec.PeerClient)
	reqs, _ := captures(t)
	for _, fr := range reqs {
		head := bytes.IndexByte(fr, typeBulk) + 1 // past "*<count>\r\n$"
		if head == 0 {
			t.Fatalf("captured command %q has no bulk string", fr)
		}
		for n := 0; n <= len(fr); n++ {
			match, sure := c.Sniff(fr[:n])
			if want := n >= head; match != want || sure != want {
				t.Fatalf("Sniff(%q) = %v, %v; want %v, %v", fr[:n], match, sure, want, want)
			}
		}
	}
}

// TestSniffOtherProtocols: the other protocols' captured frames, and their
// magic numbers, are never Redis, and Sniff is sure of it from the first
// byte: Dubbo (0xdabb), tRPC (0x0930), Thrift binary (0x80 0x01), compact
// (0x82), framed and THeader (a 4-byte length first).
func TestSniffOtherProtocols(t *testing.T) {
	c := newCodec(t, nil, codec.PeerClient)
	var frames [][]byte
	for _, glob := range []string{"../dubbo/testdata/*.bin", "../trpc/testdata/*.bin", "../thrift/testdata/*/*.bin"} {
		files, err := filepath.Glob(glob)
		if err != nil || len(files) == 0 {
			t.Fatalf("no captures at %s: %v", glob, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			must(t, err, "read")
			frames = append(frames, b)
		}
	}
	frames = append(frames,
		[]byte{0xda, 0xbb, 0xc2, 0x00}, []byte{0x09, 0x30, 0x00, 0x00},
		[]byte{0x80, 0x01, 0x00, 0x01}, []byte{0x82, 0x21, 0x00, 0x04},
		[]byte{0x00, 0x00, 0x00, 0x1c, 0x80, 0x01}, []byte{0x00, 0x00, 0x00, 0x2e, 0x0f, 0xff})
	for _, fr := range frames {
		for n := 1; n <= len(fr) && n <= 64; n++ {
			if match, sure := c.Sniff(fr[:n]); match || !sure {
				t.Fatalf("Sniff(% x) = %v, %v; want a sure no", fr[:n], match, sure)
			}
		}
	}
}

// TestSniff: what Sniff says of a prefix, byte by byte. Inline commands
// are not claimed (see Sniff).
func TestSniff(t *testing.T) {
	for _, tc := range []struct {
		in          string
		match, sure bool
	}{
		{"", false, false},
		{"*", false, false},
		{"*3", false, false},
		{"*3\r", false, false},
		{"*3\r\n", false, false},
		{"*3\r\n$", true, true},
		{"*1048576\r\n$", true, true},
		{"*1048577", false, true}, // past maxElements
		{"*0", false, true},       // an empty array opens no command
		{"*03\r\n$", false, true},
		{"*-1\r\n", false, true},
		{"*\r\n$", false, true},
		{"*3\n$", false, true},
		{"*3\r\r", false, true},
		{"*3\r\n:", false, true},
		{"*3x", false, true},
		{"PING\r\n", false, true},
		{"GET / HTTP/1.1\r\n", false, true},
		{"$3\r\nfoo\r\n", false, true},
		{"+OK\r\n", false, true},
	} {
		c := newCodec(t, nil, codec.PeerClient)
		if match, sure := c.Sniff([]byte(tc.in)); match != tc.match || sure != tc.sure {
			t.Errorf("Sniff(%q) = %v, %v; want %v, %v", tc.in, match, sure, tc.match, tc.sure)
		}
	}
}

// sniffed is what a sure match must start with.
var sniffed = regexp.MustCompile(`^\*[1-9][0-9]{0,6}\r\n\$`)

// FuzzSniff: Sniff claims only "*<count>\r\n$" starts, and once it is sure
// of a prefix, longer prefixes get the same answer.
func FuzzSniff(f *testing.F) {
	reqs, answers := captures(f)
	for _, fr := range append(reqs, answers...) {
		f.Add(fr)
	}
	f.Add([]byte{0xda, 0xbb, 0xc2})
	f.Add([]byte("PING\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c := newCodec(t, nil, codec.PeerClient)
		var sure, match bool
		for n := 0; n <= len(in); n++ {
			m, s := c.Sniff(in[:n])
			if sure && (m != match || !s) {
				t.Fatalf("Sniff(%q) = %v, %v after a sure %v on a shorter prefix", in[:n], m, s, match)
			}
			if m && (!s || !sniffed.Match(in[:n])) {
				t.Fatalf("Sniff(%q) = %v, %v", in[:n], m, s)
			}
			sure, match = s, m
		}
	})
}
