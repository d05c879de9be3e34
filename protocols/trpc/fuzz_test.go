package trpc

import (
	"bytes"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// FuzzDecode feeds arbitrary bytes through Split, Decode, Encode with a new
// id and a mutation, and Reply. Nothing may panic; a frame that decodes must
// encode unchanged to itself, and its re-encoded form must decode again.
func FuzzDecode(f *testing.F) {
	for _, b := range captures(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := newCodec(t, codec.Options{OptMaxFrameBytes: "65536"})
		sp, err := c.Split(in)
		if err != nil || sp.Len == 0 {
			return
		}
		if sp.Len > len(in) || sp.Len > 65536 {
			t.Fatalf("Split = %+v for %d bytes", sp, len(in))
		}
		frame := append([]byte(nil), in[:sp.Len]...)
		m, err := c.Decode(frame)
		if err != nil {
			return
		}
		m.Attrs.Range(func(string, string) bool { return true })
		if out, err := c.Encode(nil, m); err != nil || !bytes.Equal(out, frame) {
			t.Fatalf("Encode of an unchanged message: %v", err)
		}
		kind := m.Kind
		m.ID ^= 0x5a5a
		m.Set("x-fuzz", "1")
		out, err := c.Encode(nil, m)
		if err == nil {
			m2, err := c.Decode(out)
			if err != nil {
				t.Fatalf("re-encoded frame does not decode: %v", err)
			}
			if m2.ID != m.ID || m2.Kind != kind {
				t.Fatalf("re-encoded frame: id %d kind %v, want %d %v", m2.ID, m2.Kind, m.ID, kind)
			}
			if v, ok := m2.Get("x-fuzz"); !ok || v != "1" {
				t.Fatalf("mutation lost: %q %v", v, ok)
			}
		}
		if rep, err := c.Reply(m, codec.StatusNoRoute, "fuzz"); err == nil && rep != nil {
			if _, err := c.Encode(nil, rep); err != nil {
				t.Fatalf("Encode of a reply: %v", err)
			}
		}
	})
}
