package toy_test

import (
	"bytes"
	"testing"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// FuzzDecode feeds arbitrary bytes, seeded with the captures, through
// Split, Decode and Encode. Nothing may panic or buffer past the limit; a
// frame that decodes must encode unchanged to itself, and with a new ID
// and a mutation to a frame that decodes with both; a local reply to it
// must encode.
func FuzzDecode(f *testing.F) {
	for _, fr := range append(captures(f, "requests"), captures(f, "answers")...) {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := toy.Codec{}
		sp, err := c.Split(in)
		if err != nil || sp.Len == 0 {
			if sp.Need > toy.MaxFrame+4 {
				t.Fatalf("Split asks for %d more bytes, past the limit", sp.Need)
			}
			return
		}
		frame := in[:sp.Len]
		m, err := c.Decode(frame)
		if err != nil {
			return
		}
		m.Attrs.Range(func(string, string) bool { return true })
		if out, err := c.Encode(nil, m); err != nil || !bytes.Equal(out, frame) {
			t.Fatalf("Encode of an unchanged message: %v", err)
		}
		m.ID ^= 0x5a5a
		m.Set("env", "canary")
		if out, err := c.Encode(nil, m); err == nil {
			m2, err := c.Decode(out)
			if err != nil || m2.ID != m.ID || m2.Kind != m.Kind {
				t.Fatalf("a rewritten frame decodes as %+v, %v", m2, err)
			}
			if v, ok := m2.Get("env"); !ok || v != "canary" {
				t.Fatalf("mutation lost: %q, %v", v, ok)
			}
		}
		if rep, err := c.Reply(m, codec.StatusNoRoute, "fuzz"); err != nil {
			t.Fatalf("Reply: %v", err)
		} else if rep != nil {
			if _, err := c.Encode(nil, rep); err != nil {
				t.Fatalf("Encode of a reply: %v", err)
			}
		}
	})
}
