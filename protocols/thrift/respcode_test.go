package thrift

import (
	"context"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// The captures of a real server of the generated echo service: a reply is
// REPLY, the server's answer to a method it lacks is the
// TApplicationException type UNKNOWN_METHOD, in every protocol and
// transport.
func TestResponseCode(t *testing.T) {
	for _, c := range combos {
		cd := newCodec(t, nil)
		for capture, want := range map[string]string{"echo_reply": codeReply, "nosuch_exception": "EXCEPTION:UNKNOWN_METHOD"} {
			m, err := cd.Decode(readCapture(t, c, capture))
			if err != nil {
				t.Fatalf("%s %s: %v", c.name, capture, err)
			}
			if got := cd.ResponseCode(m); got != want {
				t.Errorf("%s %s: ResponseCode = %q, want %q", c.name, capture, got, want)
			}
		}
	}
}

// Every TApplicationException type Apache Thrift's library writes reads
// back as its code; a type outside the eleven, and an exception without
// one, are EXCEPTION alone. The type is found whichever field comes first.
func TestResponseCodeOfEachExceptionType(t *testing.T) {
	want := []string{"EXCEPTION:UNKNOWN", "EXCEPTION:UNKNOWN_METHOD", "EXCEPTION:INVALID_MESSAGE_TYPE",
		"EXCEPTION:WRONG_METHOD_NAME", "EXCEPTION:BAD_SEQUENCE_ID", "EXCEPTION:MISSING_RESULT",
		"EXCEPTION:INTERNAL_ERROR", "EXCEPTION:PROTOCOL_ERROR", "EXCEPTION:INVALID_TRANSFORM",
		"EXCEPTION:INVALID_PROTOCOL", "EXCEPTION:UNSUPPORTED_CLIENT_TYPE"}
	for _, c := range combos {
		cd := newCodec(t, c.options())
		code := func(write func(ctx context.Context, p thrift.TProtocol) error) string {
			t.Helper()
			buf := thrift.NewTMemoryBuffer()
			p := c.libProtocol(buf)
			ctx := context.Background()
			must(t, p.WriteMessageBegin(ctx, "echo", thrift.EXCEPTION, 7))
			must(t, write(ctx, p))
			must(t, p.WriteMessageEnd(ctx))
			must(t, p.Flush(ctx))
			m, err := cd.Decode(buf.Bytes())
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			return cd.ResponseCode(m)
		}
		for typ := int32(0); typ <= 11; typ++ {
			w := codeException
			if int(typ) < len(want) {
				w = want[typ]
			}
			if got := code(thrift.NewTApplicationException(typ, "boom").Write); got != w {
				t.Errorf("%s: type %d reads %q, want %q", c.name, typ, got, w)
			}
		}
		typeFirst := func(ctx context.Context, p thrift.TProtocol) error {
			must(t, p.WriteStructBegin(ctx, "TApplicationException"))
			must(t, p.WriteFieldBegin(ctx, "type", thrift.I32, 2))
			must(t, p.WriteI32(ctx, 7))
			must(t, p.WriteFieldEnd(ctx))
			must(t, p.WriteFieldBegin(ctx, "message", thrift.STRING, 1))
			must(t, p.WriteString(ctx, "late message"))
			must(t, p.WriteFieldEnd(ctx))
			must(t, p.WriteFieldStop(ctx))
			return p.WriteStructEnd(ctx)
		}
		if got := code(typeFirst); got != "EXCEPTION:PROTOCOL_ERROR" {
			t.Errorf("%s: type before message reads %q", c.name, got)
		}
		messageOnly := func(ctx context.Context, p thrift.TProtocol) error {
			must(t, p.WriteStructBegin(ctx, "TApplicationException"))
			must(t, p.WriteFieldBegin(ctx, "message", thrift.STRING, 1))
			must(t, p.WriteString(ctx, "no type"))
			must(t, p.WriteFieldEnd(ctx))
			must(t, p.WriteFieldStop(ctx))
			return p.WriteStructEnd(ctx)
		}
		if got := code(messageOnly); got != codeException {
			t.Errorf("%s: an exception without a type reads %q", c.name, got)
		}
	}
}

// A local reply's code is the one its own exception reads as.
func TestLocalResponseCodeIsTheReplysOwn(t *testing.T) {
	cd := newCodec(t, nil)
	req, err := cd.Decode(readCapture(t, combos[0], "echo_request"))
	if err != nil {
		t.Fatal(err)
	}
	for st, want := range map[codec.Status]string{
		codec.StatusNoRoute:      "EXCEPTION:UNKNOWN_METHOD",
		codec.StatusBadRequest:   "EXCEPTION:PROTOCOL_ERROR",
		codec.StatusUnauthorized: "EXCEPTION:UNKNOWN",
		codec.StatusTimeout:      "EXCEPTION:INTERNAL_ERROR",
		codec.StatusRateLimited:  "EXCEPTION:INTERNAL_ERROR",
	} {
		reply, err := cd.Reply(req, st, "")
		if err != nil {
			t.Fatal(err)
		}
		if got, local := cd.ResponseCode(reply), cd.LocalResponseCode(st); got != want || local != want {
			t.Errorf("%s: the reply reads %q, LocalResponseCode %q, want %q", st, got, local, want)
		}
	}
	if got := cd.LocalResponseCode(codec.StatusOK); got != codeReply {
		t.Errorf("LocalResponseCode(ok) = %q", got)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
