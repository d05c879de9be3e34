package redis

import (
	"bytes"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Response codes (codec.ResponseCoder), the response_code of Istio's
// metrics: "OK" for any answer that is not an error, else the error's code,
// the first word of a simple error (-ERR, -MOVED, -WRONGTYPE, ...). The
// codes are the ones Redis and the proxy's local replies use (knownCodes);
// any other is counted as "ERR", so a server cannot grow the metrics with
// made-up codes. A blob error (RESP3 '!') is "ERR" too.
const codeOK = "OK"

var knownCodes = func() map[string]string {
	m := map[string]string{}
	for _, c := range []string{
		"ERR", "MOVED", "ASK", "TRYAGAIN", "CROSSSLOT", "CLUSTERDOWN", "LOADING", "BUSY", "BUSYKEY",
		"NOSCRIPT", "NOAUTH", "NOPERM", "WRONGPASS", "WRONGTYPE", "READONLY", "MASTERDOWN", "MISCONF",
		"NOREPLICAS", "OOM", "EXECABORT", "NOGROUP", "UNBLOCKED", "NOPROTO",
	} {
		m[c] = c
	}
	for _, c := range errorPrefix {
		m[c] = c
	}
	return m
}()

// ResponseCode implements codec.ResponseCoder.
func (c *redisCodec) ResponseCode(resp *codec.Message) string {
	if resp.Status == codec.StatusOK || len(resp.Raw) == 0 {
		return codeOK
	}
	if resp.Raw[0] != typeError {
		return "ERR"
	}
	line := resp.Raw[1:]
	if i := bytes.IndexAny(line, " \r"); i >= 0 {
		line = line[:i]
	}
	if code, ok := knownCodes[string(line)]; ok { // no allocation: a map lookup by []byte
		return code
	}
	return "ERR"
}

// LocalResponseCode implements codec.ResponseCoder: the error code the
// local reply for s starts with (errorPrefix).
func (c *redisCodec) LocalResponseCode(s codec.Status) string {
	if p, ok := errorPrefix[s]; ok {
		return p
	}
	return codeOK
}

var _ codec.ResponseCoder = (*redisCodec)(nil)
