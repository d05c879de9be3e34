package thrift

import (
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

func TestResponseCode(t *testing.T) {
	for _, c := range combos {
		cd := newCodec(t, nil)
		for capture, want := range map[string]string{"echo_reply": codeReply, "nosuch_exception": codeException} {
			m, err := cd.Decode(readCapture(t, c, capture))
			if err != nil {
				t.Fatalf("%s %s: %v", c.name, capture, err)
			}
			if got := cd.ResponseCode(m); got != want {
				t.Errorf("%s %s: ResponseCode = %q, want %q", c.name, capture, got, want)
			}
		}
	}
	cd := newCodec(t, nil)
	if got := cd.LocalResponseCode(codec.StatusNoRoute); got != codeException {
		t.Errorf("LocalResponseCode(no_route) = %q, want %q", got, codeException)
	}
}
