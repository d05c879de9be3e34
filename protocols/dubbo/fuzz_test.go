package dubbo

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// FuzzDecode runs Split, Decode, Encode (unchanged, with a new id and with a
// mutation) and Range on arbitrary input, seeded with the library captures.
// Bad input must give errors, never panics, and a mutation Encode accepts must
// give a frame that decodes again.
func FuzzDecode(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*.bin"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata: %v", err)
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	c, err := New(codec.Options{"max_frame_bytes": "1048576"}, codec.PeerClient)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if head, ok := c.(codec.HeadDecoder).DecodeHead(data); ok && (len(data) < headerLen || head == nil) {
			t.Fatalf("DecodeHead of %d bytes said ok with %v", len(data), head)
		}
		sp, err := c.Split(data)
		if err != nil || sp.Len == 0 {
			return
		}
		frame := data[:sp.Len]
		m, err := c.Decode(frame)
		if err != nil {
			return
		}
		out, err := c.Encode(nil, m)
		if err != nil || !bytes.Equal(out, frame) {
			t.Fatalf("Encode of an unchanged message: %v", err)
		}
		m.Attrs.Range(func(k, v string) bool { return true })
		m.ID ^= 0xff
		if out, err = c.Encode(nil, m); err != nil {
			t.Fatalf("Encode with a new id: %v", err)
		}
		if m2, err := c.Decode(out); err != nil || m2.ID != m.ID || m2.Kind != m.Kind {
			t.Fatalf("Decode after an id rewrite: %+v, %v", m2, err)
		}
		m.Set("fuzz-key", "fuzz-value")
		out, err = c.Encode(nil, m)
		if err != nil {
			return
		}
		m2, err := c.Decode(out)
		if err != nil {
			t.Fatalf("a mutated frame does not decode: %v", err)
		}
		if v, ok := m2.Get("fuzz-key"); !ok || v != "fuzz-value" {
			t.Fatalf("the mutation is lost: %q, %v", v, ok)
		}
	})
}
