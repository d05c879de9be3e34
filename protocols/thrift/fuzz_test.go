package thrift

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// FuzzDecode runs Split, Decode, Encode (unchanged, with a new id and with a
// mutation) and Range on arbitrary input, with a fresh auto-detecting codec
// as a new connection has, seeded with the library captures of every
// combination. Bad input must give errors, never panics; a frame Encode
// writes must decode again with the new id, kind and mutation.
func FuzzDecode(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*", "*.bin"))
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
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &Codec{maxFrame: 1 << 20}
		sp, err := c.Split(data)
		if err != nil || sp.Len == 0 {
			return
		}
		if sp.Len > len(data) {
			t.Fatalf("Split = %+v past the %d bytes", sp, len(data))
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
		if m.Kind == codec.KindResponse {
			if code := c.ResponseCode(m); code != codeReply && code != codeException && !strings.HasPrefix(code, codeException+":") {
				t.Fatalf("ResponseCode = %q, not one of the bounded codes", code)
			}
		}
		m.ID ^= 0x1ff
		if out, err = c.Encode(nil, m); err != nil {
			t.Fatalf("Encode with a new id: %v", err)
		}
		if sp, err := c.Split(out); err != nil || sp.Len != len(out) {
			t.Fatalf("Split after an id rewrite: %+v, %v", sp, err)
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
		if v, ok := m2.Get("fuzz-key"); !ok || v != "fuzz-value" || m2.ID != m.ID {
			t.Fatalf("the mutation is lost: %q, %v", v, ok)
		}
	})
}
