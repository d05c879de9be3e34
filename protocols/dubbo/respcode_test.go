package dubbo

import (
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

func TestResponseCode(t *testing.T) {
	c := &Codec{}
	for _, tc := range []struct {
		status byte
		st     codec.Status
		want   string
	}{
		{statusOK, codec.StatusOK, "20"},
		{statusOK, codec.StatusError, codeException},
		{statusServiceNotFound, codec.StatusError, "60"},
		{statusThreadpoolExhaust, codec.StatusError, "100"},
	} {
		raw := make([]byte, headerLen)
		raw[0], raw[1], raw[3] = magicHigh, magicLow, tc.status
		if got := c.ResponseCode(&codec.Message{Raw: raw, Status: tc.st}); got != tc.want {
			t.Errorf("ResponseCode(status %d, %s) = %q, want %q", tc.status, tc.st, got, tc.want)
		}
	}
	for st, want := range map[codec.Status]string{codec.StatusNoRoute: "60", codec.StatusTimeout: "31", codec.StatusRateLimited: "100", codec.StatusOK: "20"} {
		if got := c.LocalResponseCode(st); got != want {
			t.Errorf("LocalResponseCode(%s) = %q, want %q", st, got, want)
		}
	}
}
