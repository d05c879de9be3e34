package codec

import "fmt"

// SafeSplit calls c.Split; a panic in it comes back as an ErrMalformed
// error. Codecs must not panic (the conformance suite and fuzzing check
// them), but a decoder's bug on hostile bytes should end one connection,
// not the proxy and every connection it carries.
func SafeSplit(c Codec, buf []byte) (sp Split, err error) {
	defer recoverAs(&err, "Split")
	return c.Split(buf)
}

// SafeDecode calls c.Decode as SafeSplit calls Split.
func SafeDecode(c Codec, frame []byte) (m *Message, err error) {
	defer recoverAs(&err, "Decode")
	return c.Decode(frame)
}

// recoverAs turns a panic into *err; it must be the deferred call itself,
// for recover to see the panic.
func recoverAs(err *error, call string) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("codec: %s panicked: %v: %w", call, p, ErrMalformed)
	}
}
