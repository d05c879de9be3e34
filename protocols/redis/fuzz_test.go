package redis

import (
	"os"
	"testing"
)

// FuzzDecode feeds the RESP splitter and decoder, on both sides, with the
// captured traffic as seeds: any input must give a frame or an error, never a
// panic or a request to buffer past the limit.
func FuzzDecode(f *testing.F) {
	reqs, answers := captures(f)
	for _, fr := range append(reqs, answers...) {
		f.Add(fr)
	}
	extra, _ := os.ReadFile("testdata/requests.resp")
	f.Add(extra)
	f.Add([]byte("|1\r\n+a\r\n:1\r\n%1\r\n~1\r\n>1\r\n=5\r\ntxt:a\r\n"))
	f.Add([]byte("SET a \"b c\"\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, side := range []int32{sideUnknown, sideServer, sideClient} {
			c := newCodec(t, nil, side)
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
			m.Attrs.Range(func(string, string) bool { return true })
			if _, err := c.Encode(nil, m); err != nil {
				t.Fatalf("Encode of a decoded frame: %v", err)
			}
			if m.Kind == 3 { // a response: the handler parses these
				_, _, _ = parseValue(m.Raw)
			}
		}
	})
}
