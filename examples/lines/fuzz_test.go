package lines_test

import (
	"bytes"
	"testing"

	"github.com/rosetta-mesh/rosetta/examples/lines"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// FuzzDecode feeds arbitrary bytes, seeded with the captures, to both
// sides' codecs. Nothing may panic or buffer past the limit; a frame that
// decodes must encode unchanged to itself, a request with a mutation too,
// and a local reply to a request must encode.
func FuzzDecode(f *testing.F) {
	for _, fr := range append(captures(f, "requests"), captures(f, "answers")...) {
		f.Add(fr)
	}
	const limit = 256
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, peer := range []codec.Peer{codec.PeerClient, codec.PeerServer} {
			c, err := lines.New(codec.Options{"max_frame_bytes": "256"}, peer)
			if err != nil {
				t.Fatal(err)
			}
			sp, err := c.Split(in)
			if err != nil || sp.Len == 0 {
				if sp.Need > limit {
					t.Fatalf("Split asks for %d more bytes, past the limit", sp.Need)
				}
				continue
			}
			if sp.Len > len(in) || sp.Len > limit {
				t.Fatalf("Split = %+v for %d bytes", sp, len(in))
			}
			frame := in[:sp.Len]
			m, err := c.Decode(frame)
			if err != nil {
				continue
			}
			m.Attrs.Range(func(string, string) bool { return true })
			if out, err := c.Encode(nil, m); err != nil || !bytes.Equal(out, frame) {
				t.Fatalf("Encode of an unchanged message: %q, %v", out, err)
			}
			if m.Kind != codec.KindRequest {
				continue
			}
			m.Set(lines.AttrKey, "fuzz")
			if out, err := c.Encode(nil, m); err == nil {
				if m2, err := c.Decode(out); err != nil || m2.Attrs == nil || !hasKey(m2, "fuzz") {
					t.Fatalf("a mutated request %q decodes as %v, %v", out, m2, err)
				}
			}
			rep, err := c.Reply(m, codec.StatusNoRoute, "fuzz\nreply")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Encode(nil, rep); err != nil {
				t.Fatalf("Encode of a reply: %v", err)
			}
		}
	})
}

func hasKey(m *codec.Message, key string) bool {
	v, ok := m.Get(lines.AttrKey)
	return ok && v == key
}
