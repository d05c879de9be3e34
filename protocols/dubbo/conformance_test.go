package dubbo

import (
	"strings"
	"testing"

	hessian "github.com/apache/dubbo-go-hessian2"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/codec/codectest"
)

func TestConformance(t *testing.T) {
	p, ok := codec.Lookup(Name)
	if !ok {
		t.Fatal("dubbo is not registered")
	}
	load := func(names ...string) [][]byte {
		var out [][]byte
		for _, n := range names {
			out = append(out, readCapture(t, n))
		}
		return out
	}
	codectest.Run(t, codectest.Suite{
		Protocol:   p,
		Requests:   load("request_twoway", "request_oneway", "request_unknown_class", "heartbeat_request"),
		Responses:  load("heartbeat_response", "response_value", "response_value_attachments", "response_null", "response_exception", "response_service_error"),
		Oversized:  header(0xc2, 0, 1, codec.DefaultMaxFrame),
		Mutation:   &codec.Attr{Key: "x-rosetta-route", Value: "canary"},
		CheckReply: checkReply,
	})
}

// checkReply reads a local reply with hessian2's Dubbo codec, as a dubbo-go
// client would: the header must carry the request's id and our status byte,
// and the body must come out as an exception holding our message.
func checkReply(t *testing.T, req *codec.Message, status codec.Status, reply []byte) {
	t.Helper()
	f, err := libDecode(reply)
	if err != nil {
		t.Fatalf("the library refuses our %v reply: %v", status, err)
	}
	code, _ := replyStatus(status)
	h := f.Header
	if h.ID != int64(req.ID) || h.ResponseStatus != code || h.Type&hessian.PackageResponse_Exception == 0 {
		t.Fatalf("library read header %+v; want id %d, status %d, an exception", h, req.ID, code)
	}
	if want := "rosetta: " + status.String(); !strings.Contains(f.Err, want) {
		t.Fatalf("library read exception %q, want it to hold %q", f.Err, want)
	}
}
