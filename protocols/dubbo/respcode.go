package dubbo

import (
	"strconv"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Response codes (codec.ResponseCoder), the response_code of Istio's
// metrics: the status byte in decimal ("20" OK, "30"/"31" timeouts, "40"
// bad request, "50" bad response, "60" service not found, "70" service
// error, "80" server error, "90" client error, "100" thread pool
// exhausted), and "EXCEPTION" for a status 20 answer whose body is an
// exception the service threw (body flag 0 or 3). A local reply has the
// status byte replyStatus gives its Status.
var statusCodes = func() (t [256]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

const codeException = "EXCEPTION"

// ResponseCode implements codec.ResponseCoder.
func (c *Codec) ResponseCode(resp *codec.Message) string {
	if len(resp.Raw) < headerLen {
		return resp.Status.String()
	}
	st := resp.Raw[3]
	if st == statusOK && resp.Status == codec.StatusError {
		return codeException
	}
	return statusCodes[st]
}

// LocalResponseCode implements codec.ResponseCoder.
func (c *Codec) LocalResponseCode(s codec.Status) string {
	if st, ok := replyStatus(s); ok {
		return statusCodes[st]
	}
	return statusCodes[statusOK]
}

var _ codec.ResponseCoder = (*Codec)(nil)
