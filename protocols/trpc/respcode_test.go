package trpc

import (
	"testing"

	trpcpb "trpc.group/trpc/trpc-protocol/pb/go/trpc"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

func TestResponseCode(t *testing.T) {
	c := newCodec(t, nil).(codec.ResponseCoder)
	for _, tc := range []struct {
		rsp  *trpcpb.ResponseProtocol
		want string
	}{
		{&trpcpb.ResponseProtocol{RequestId: 1}, "0"},
		{&trpcpb.ResponseProtocol{RequestId: 1, Ret: RetServerNoFunc}, "12"},
		{&trpcpb.ResponseProtocol{RequestId: 1, FuncRet: 1234}, "1234"},
		{&trpcpb.ResponseProtocol{RequestId: 1, Ret: RetServerTimeout, FuncRet: 7}, "21"},
	} {
		m, err := newCodec(t, nil).Decode(build(t, unaryFrame, 0, 1, tc.rsp, nil))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ResponseCode(m); got != tc.want {
			t.Errorf("ResponseCode(ret %d, func_ret %d) = %q, want %q", tc.rsp.Ret, tc.rsp.FuncRet, got, tc.want)
		}
	}
	for st, want := range map[codec.Status]string{codec.StatusNoRoute: "12", codec.StatusTimeout: "21", codec.StatusRateLimited: "23", codec.StatusOK: "0"} {
		if got := c.LocalResponseCode(st); got != want {
			t.Errorf("LocalResponseCode(%s) = %q, want %q", st, got, want)
		}
	}
}
