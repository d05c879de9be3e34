package thrift

import "github.com/rosetta-mesh/rosetta/pkg/codec"

// detect tells from a connection's first bytes whether its frames carry a
// length prefix. It follows Go's THeaderTransport: a strict binary or compact
// message at offset 0 is unframed; otherwise the first four bytes are a frame
// length, and the next two are the THeader magic, a strict binary or a compact
// message. Go's transport stops there; Rosetta also accepts the old
// non-strict binary protocol, framed (a frame length, then a name length under
// 64 KiB, so two zero bytes) or unframed (a name length, then the name), and
// checks that a valid message type follows the name.
//
// It answers a class, or how many more bytes it needs, or an error.
func (c *Codec) detect(b []byte) (class, int, error) {
	if len(b) < 4 {
		return classUnknown, 4 - len(b), nil
	}
	if isStrict(b) || isCompact(b) {
		return classUnframed, 0, nil
	}
	if len(b) < 6 {
		return classUnknown, 6 - len(b), nil
	}
	p := b[4:]
	if isStrict(p) || isCompact(p) || p[0] == headerMagic0 && p[1] == headerMagic1 {
		return classLengthPrefixed, 0, nil
	}
	if c.protocol == protocolCompact {
		return classUnknown, 0, notThrift(b)
	}
	if p[0] == 0 && p[1] == 0 {
		return c.detectOldFramed(b)
	}
	return c.detectOldUnframed(b)
}

// detectOldFramed checks a frame length followed by a non-strict message.
func (c *Codec) detectOldFramed(b []byte) (class, int, error) {
	if len(b) < 8 {
		return classUnknown, 8 - len(b), nil
	}
	frame, name := int64(be32(b)), int64(be32(b[4:]))
	if frame > int64(c.maxFrame) {
		return classUnknown, 0, codec.Errorf(Name, codec.ErrTooLarge, "frame of %d bytes is over the limit of %d", frame, c.maxFrame)
	}
	// name length, name, type byte, seqid and at least a STOP byte.
	if 4+name+1+4+1 > frame {
		return classUnknown, 0, notThrift(b)
	}
	return typeAt(b, 8+int(name), classLengthPrefixed)
}

// detectOldUnframed checks a non-strict message at offset 0.
func (c *Codec) detectOldUnframed(b []byte) (class, int, error) {
	name := int32(be32(b))
	if name < 0 {
		return classUnknown, 0, notThrift(b)
	}
	if int64(name)+4+1+4+1 > int64(c.maxFrame) {
		return classUnknown, 0, codec.Errorf(Name, codec.ErrTooLarge, "message name of %d bytes is over the limit of %d", name, c.maxFrame)
	}
	return typeAt(b, 4+int(name), classUnframed)
}

// typeAt answers cl when b[at] is a message type, or asks for the byte.
func typeAt(b []byte, at int, cl class) (class, int, error) {
	if len(b) <= at {
		return classUnknown, at + 1 - len(b), nil
	}
	if t := b[at]; t < msgCall || t > msgOneway {
		return classUnknown, 0, notThrift(b)
	}
	return cl, 0, nil
}

func notThrift(b []byte) error {
	return codec.Errorf(Name, codec.ErrMalformed, "not a thrift message: first bytes % x", b[:min(8, len(b))])
}
