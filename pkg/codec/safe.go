package codec

import (
	"fmt"
	"runtime/debug"
)

// The Safe functions call a codec and turn a panic in it into an error
// (a *PanicError, which wraps ErrMalformed). Codecs must not panic (the
// conformance suite and fuzzing check them), but a codec's bug on hostile
// bytes should end one connection, not the proxy and every connection it
// carries. The proxy reads every frame through SafeSplit and SafeDecode and
// guards the calls off the per-request path: Reply, HeartbeatReply, the
// Encode of a heartbeat answer to a server, and through Guard a
// HeadDecoder's DecodeHead and a dedicated connection's receiver. Sniff runs
// inside the Split of an auto listener's sniffing codec, so SafeSplit
// guards it too.
//
// Not guarded, so a panic there ends the proxy: Encode on the request path
// (requests, and every answer and push to a client), Attributes' Get and
// Range (routing, hash policies, metrics and authorization read them, and
// lazy decoding runs there), PoolKey, a Handler's Handle, the callbacks it
// gives Forward and SendTo, and Message.Written: guards on the request path
// cost about 8% of the proxy's CPU per pipelined Redis request
// (docs/benchmarks.md), so the codecs' fuzz targets hold these to never
// panicking instead. Nor are Protocol.New, Handshake, GoAway and Close,
// which run per connection or per config, not per request.

// PanicError is a codec's panic, with the stack where it happened so the
// log can say where the bug is.
type PanicError struct {
	Call  string // the codec's method, or what the proxy was calling
	Value any    // what the codec panicked with
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("codec: %s panicked: %v: %v", e.Call, e.Value, ErrMalformed)
}

func (e *PanicError) Unwrap() error { return ErrMalformed }

// SafeSplit calls c.Split.
func SafeSplit(c Codec, buf []byte) (sp Split, err error) {
	defer recoverAs(&err, "Split")
	return c.Split(buf)
}

// SafeDecode calls c.Decode.
func SafeDecode(c Codec, frame []byte) (m *Message, err error) {
	defer recoverAs(&err, "Decode")
	return c.Decode(frame)
}

// SafeEncode calls c.Encode; after a panic it returns dst as it was.
func SafeEncode(c Codec, dst []byte, m *Message) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = dst, newPanicError("Encode", p)
		}
	}()
	return c.Encode(dst, m)
}

// SafeReply calls c.Reply.
func SafeReply(c Codec, req *Message, st Status, detail string) (m *Message, err error) {
	defer recoverAs(&err, "Reply")
	return c.Reply(req, st, detail)
}

// SafeHeartbeatReply calls h.HeartbeatReply.
func SafeHeartbeatReply(h HeartbeatReplier, req *Message) (m *Message, err error) {
	defer recoverAs(&err, "HeartbeatReply")
	return h.HeartbeatReply(req)
}

// Guard runs fn, a call into a codec's code that returns nothing (the
// proxy guards a dedicated connection's receiver with it); call names it
// in the error.
func Guard(call string, fn func()) (err error) {
	defer recoverAs(&err, call)
	fn()
	return nil
}

// recoverAs turns a panic into *err; it must be the deferred call itself,
// for recover to see the panic.
func recoverAs(err *error, call string) {
	if p := recover(); p != nil {
		*err = newPanicError(call, p)
	}
}

func newPanicError(call string, p any) *PanicError {
	return &PanicError{Call: call, Value: p, Stack: debug.Stack()}
}
