package redis

import (
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

func TestResponseCode(t *testing.T) {
	c := newCodec(t, nil, codec.PeerServer)
	for answer, want := range map[string]string{
		"+OK\r\n":                                "OK",
		"$3\r\nbar\r\n":                          "OK",
		"-ERR unknown command 'x'\r\n":           "ERR",
		"-MOVED 3999 127.0.0.1:6381\r\n":         "MOVED",
		"-WRONGTYPE Operation against a key\r\n": "WRONGTYPE",
		"-MADEUP5 something\r\n":                 "ERR", // a code Redis does not use cannot become a label
		"-NOUPSTREAM rosetta: down\r\n":          "NOUPSTREAM",
	} {
		m, err := c.Decode([]byte(answer))
		if err != nil {
			t.Fatalf("%q: %v", answer, err)
		}
		if got := c.ResponseCode(m); got != want {
			t.Errorf("ResponseCode(%q) = %q, want %q", answer, got, want)
		}
	}
	if got := c.LocalResponseCode(codec.StatusTimeout); got != "TIMEOUT" {
		t.Errorf("LocalResponseCode(timeout) = %q, want TIMEOUT", got)
	}
}
