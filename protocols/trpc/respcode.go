package trpc

import (
	"strconv"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// ResponseCode implements codec.ResponseCoder: the response_code of Istio's
// metrics is the answer's framework return code (ret) in decimal when it is
// not 0, else its business code (func_ret): "0" is success, "12" no such
// function, "21" server timeout, "22" overload, "23" throttled, "31"
// system error, "41" auth failure, "51" validation, "131"/"141" the
// caller's routing and network errors, "999" unknown; other values are the
// service's own func_ret. A stream's INIT answer and CLOSE frame give their
// ret likewise.
func (c *trpcCodec) ResponseCode(resp *codec.Message) string {
	f, ok := resp.Private.(*frame)
	if !ok {
		return resp.Status.String()
	}
	if f.ret != 0 {
		return strconv.Itoa(int(f.ret))
	}
	return strconv.Itoa(int(f.funcRet))
}

// LocalResponseCode implements codec.ResponseCoder: the ret RetCode gives
// the local reply for s.
func (c *trpcCodec) LocalResponseCode(s codec.Status) string {
	if s == codec.StatusOK {
		return "0"
	}
	return strconv.Itoa(int(RetCode(s)))
}

var _ codec.ResponseCoder = (*trpcCodec)(nil)
