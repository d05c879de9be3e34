package thrift

import (
	"bytes"
	"math"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Attribute names.
const (
	keyMethod  = "method"
	keyService = "service"
)

// encoding is how one message is written.
type encoding uint8

const (
	encBinary    encoding = iota + 1 // strict binary
	encBinaryOld                     // non-strict binary
	encCompact
)

var encodingNames = [...]string{"", "binary", "non-strict binary", "compact"}

// frameInfo is what Encode and Reply need to write a decoded message again;
// it is the message's Private. Offsets are into Message.Raw.
type frameInfo struct {
	transport transport
	enc       encoding
	typ       byte
	seqID     uint32
	msgOff    int // where the protocol message starts
	nameOff   int
	nameEnd   int
	seqOff    int
	seqLen    int // 4, or a compact varint's length

	// THeader only.
	protoID  byte
	hdrEnd   int          // the end of the header block: the payload starts here
	headers  []codec.Attr // the key/value info headers, in wire order
	infoRest []byte       // info sections of other types, kept verbatim
}

// attrs are a message's attributes: the method, the service of a
// multiplexed name ("Service:method"), and THeader key/value headers. The
// name's parts hide headers called method or service.
type attrs struct {
	method      string
	service     string
	multiplexed bool
	headers     []codec.Attr
}

// Get implements codec.Attributes. A header repeated on the wire reads as its
// last value, as Thrift's own readers keep it.
func (a *attrs) Get(key string) (string, bool) {
	switch {
	case key == keyMethod:
		return a.method, true
	case key == keyService && a.multiplexed:
		return a.service, true
	}
	for i := len(a.headers) - 1; i >= 0; i-- {
		if a.headers[i].Key == key {
			return a.headers[i].Value, true
		}
	}
	return "", false
}

// Range implements codec.Attributes.
func (a *attrs) Range(fn func(key, value string) bool) {
	if !fn(keyMethod, a.method) {
		return
	}
	if a.multiplexed && !fn(keyService, a.service) {
		return
	}
	for _, h := range a.headers {
		if h.Key == keyMethod || h.Key == keyService && a.multiplexed {
			continue
		}
		if !fn(h.Key, h.Value) {
			return
		}
	}
}

// decoded is a message, its Private and its attributes in one allocation.
type decoded struct {
	msg   codec.Message
	info  frameInfo
	attrs attrs
}

// Decode implements codec.Codec. It reads the transport's header and the
// message header (type, name, seqid); an unframed message's struct is also
// stepped over, to check that it ends where the frame does. Frames with a
// length prefix are not walked: their length already delimits them.
func (c *Codec) Decode(frame []byte) (*codec.Message, error) {
	if c.class == classUnknown {
		cl, need, err := c.detect(frame)
		if err != nil {
			return nil, err
		}
		if need > 0 {
			return nil, truncated(len(frame))
		}
		c.class = cl
	}
	d := &decoded{}
	var err error
	switch {
	case c.class == classUnframed:
		err = c.decodeUnframed(d, frame)
	case len(frame) >= 6 && frame[4] == headerMagic0 && frame[5] == headerMagic1:
		err = c.decodeHeader(d, frame)
	default:
		err = c.decodeFramed(d, frame)
	}
	if err != nil {
		return nil, err
	}
	d.finish(frame)
	if d.msg.Kind == codec.KindRequest && len(c.oneway) > 0 && c.isOneway(&d.attrs, frame[d.info.nameOff:d.info.nameEnd]) {
		d.msg.Kind = codec.KindOneway
	}
	return &d.msg, nil
}

// isOneway reports whether the oneway_methods option names the message, by
// its whole name or its bare method.
func (c *Codec) isOneway(a *attrs, name []byte) bool {
	return c.oneway[string(name)] || a.multiplexed && c.oneway[a.method]
}

func truncated(n int) error {
	return codec.Errorf(Name, codec.ErrMalformed, "message truncated at %d bytes", n)
}

// short turns errShort, which means "the frame ends too early" once a whole
// frame is given, into a malformed-frame error.
func short(err error, n int) error {
	if err == errShort {
		return truncated(n)
	}
	return err
}

func (c *Codec) decodeUnframed(d *decoded, f []byte) error {
	r := reader{b: f, limit: c.maxFrame}
	h, err := c.readUnframed(&r)
	if err != nil {
		return short(err, len(f))
	}
	if r.pos != len(f) {
		return codec.Errorf(Name, codec.ErrMalformed, "%d bytes after the message", len(f)-r.pos)
	}
	d.info = frameInfo{transport: transportUnframed}
	d.info.setMessage(h, 0)
	return nil
}

// frameLength checks a length-prefixed frame's length against its size.
func (c *Codec) frameLength(f []byte) error {
	if len(f) < 4 {
		return truncated(len(f))
	}
	n := be32(f)
	if n > uint32(c.maxFrame) {
		return codec.Errorf(Name, codec.ErrTooLarge, "frame of %d bytes is over the limit of %d", n, c.maxFrame)
	}
	if int(n) != len(f)-4 {
		return codec.Errorf(Name, codec.ErrMalformed, "frame length %d, but the frame has %d bytes after it", n, len(f)-4)
	}
	return nil
}

func (c *Codec) decodeFramed(d *decoded, f []byte) error {
	if c.transport == transportHeader {
		return codec.Errorf(Name, codec.ErrMalformed, "transport=header, but the frame has no THeader magic: % x", f[:min(8, len(f))])
	}
	if err := c.frameLength(f); err != nil {
		return err
	}
	r := reader{b: f, pos: 4, limit: len(f)}
	h, err := c.readMessageBegin(&r)
	if err != nil {
		return short(err, len(f))
	}
	d.info = frameInfo{transport: transportFramed}
	d.info.setMessage(h, 4)
	return nil
}

// decodeHeader reads a THeader frame: the fixed part, the header block (the
// protocol id, transforms, info sections) and the payload's message header.
func (c *Codec) decodeHeader(d *decoded, f []byte) error {
	if c.transport == transportFramed {
		return codec.Errorf(Name, codec.ErrUnsupported, "a THeader frame on a connection set to transport=framed")
	}
	if err := c.frameLength(f); err != nil {
		return err
	}
	if len(f) < headerStart {
		return truncated(len(f))
	}
	end := headerStart + 4*int(be16(f[12:]))
	if end > len(f) {
		return codec.Errorf(Name, codec.ErrMalformed, "THeader header of %d bytes runs past the frame", end-headerStart)
	}
	d.info = frameInfo{transport: transportHeader, hdrEnd: end}
	r := reader{b: f[:end], pos: headerStart, limit: end}
	if err := d.info.readHeaderBlock(&r); err != nil {
		if err == errShort {
			return codec.Errorf(Name, codec.ErrMalformed, "THeader header block ends inside a value")
		}
		return err
	}
	r = reader{b: f, pos: end, limit: len(f)}
	h, err := c.readMessageBegin(&r)
	if err != nil {
		return short(err, len(f))
	}
	if (h.enc == encCompact) != (d.info.protoID == headerCompact) {
		return codec.Errorf(Name, codec.ErrMalformed, "THeader protocol id %d, but the payload is %s", d.info.protoID, encodingNames[h.enc])
	}
	d.info.setMessage(h, end)
	return nil
}

func (fi *frameInfo) readHeaderBlock(r *reader) error {
	id, err := r.uvarint(5)
	if err != nil {
		return err
	}
	if id != headerBinary && id != headerCompact {
		return codec.Errorf(Name, codec.ErrUnsupported, "THeader protocol id %d (only 0 binary and 2 compact are)", id)
	}
	fi.protoID = byte(id)
	transforms, err := r.uvarint(5)
	if err != nil {
		return err
	}
	if transforms != 0 {
		return codec.Errorf(Name, codec.ErrUnsupported, "THeader transforms (zlib, ...) are not supported")
	}
	for r.pos < len(r.b) {
		start := r.pos
		info, err := r.uvarint(5)
		if err != nil {
			return err
		}
		if info == 0 { // padding
			return nil
		}
		if info != infoKeyValue {
			// Thrift's readers stop at the first section they do not know;
			// so does Rosetta, and keeps the rest for re-encoding.
			fi.infoRest = r.b[start:]
			return nil
		}
		if err := fi.readKeyValues(r); err != nil {
			return err
		}
	}
	return nil
}

func (fi *frameInfo) readKeyValues(r *reader) error {
	n, err := r.length()
	if err != nil {
		return err
	}
	if err := r.count(int64(n), 2); err != nil {
		return err
	}
	if fi.headers == nil {
		fi.headers = make([]codec.Attr, 0, n)
	}
	for i := 0; i < n; i++ {
		k, err := r.str()
		if err != nil {
			return err
		}
		v, err := r.str()
		if err != nil {
			return err
		}
		fi.headers = append(fi.headers, codec.Attr{Key: k, Value: v})
	}
	return nil
}

// str reads a varint-length string (THeader info values).
func (r *reader) str() (string, error) {
	n, err := r.length()
	if err != nil {
		return "", err
	}
	if err := r.ensure(n); err != nil {
		return "", err
	}
	r.pos += n
	return string(r.b[r.pos-n : r.pos]), nil
}

// msgHeader is a message's first fields, with offsets into the reader's bytes.
type msgHeader struct {
	enc     encoding
	typ     byte
	seqID   uint32
	start   int
	nameOff int
	nameEnd int
	seqOff  int
	seqLen  int
}

func (fi *frameInfo) setMessage(h msgHeader, msgOff int) {
	fi.enc, fi.typ, fi.seqID = h.enc, h.typ, h.seqID
	fi.msgOff, fi.nameOff, fi.nameEnd = msgOff, h.nameOff, h.nameEnd
	fi.seqOff, fi.seqLen = h.seqOff, h.seqLen
}

// readUnframed reads a whole message: its header and its struct.
func (c *Codec) readUnframed(r *reader) (msgHeader, error) {
	h, err := c.readMessageBegin(r)
	if err != nil {
		return h, err
	}
	if h.enc == encCompact {
		err = r.skipCompactStruct(1)
	} else {
		err = r.skipBinaryStruct(1)
	}
	return h, err
}

// readMessageBegin reads a message header in whichever protocol its first
// byte names, refusing a protocol the options exclude.
func (c *Codec) readMessageBegin(r *reader) (msgHeader, error) {
	h := msgHeader{start: r.pos}
	if err := r.ensure(2); err != nil {
		return h, err
	}
	b := r.b[r.pos:]
	switch {
	case isStrict(b):
		h.enc = encBinary
	case b[0] == compactID:
		h.enc = encCompact
	default:
		h.enc = encBinaryOld
	}
	if c.protocol == protocolCompact && h.enc != encCompact || c.protocol == protocolBinary && h.enc == encCompact {
		return h, codec.Errorf(Name, codec.ErrMalformed, "protocol=%s, but the message is %s", c.protocol, encodingNames[h.enc])
	}
	var err error
	switch h.enc {
	case encBinary:
		err = h.readBinary(r)
	case encBinaryOld:
		err = h.readBinaryOld(r)
	default:
		err = h.readCompact(r)
	}
	if err != nil {
		return h, err
	}
	if h.typ < msgCall || h.typ > msgOneway {
		return h, codec.Errorf(Name, codec.ErrMalformed, "unknown message type %d", h.typ)
	}
	return h, nil
}

func (h *msgHeader) readName(r *reader, n int) error {
	if n < 0 {
		return codec.Errorf(Name, codec.ErrMalformed, "negative method name length %d", n)
	}
	h.nameOff = r.pos
	if err := r.skip(n); err != nil {
		return err
	}
	h.nameEnd = r.pos
	return nil
}

func (h *msgHeader) readSeq32(r *reader) error {
	h.seqOff, h.seqLen = r.pos, 4
	seq, err := r.u32()
	h.seqID = seq
	return err
}

func (h *msgHeader) readBinary(r *reader) error {
	v, err := r.u32()
	if err != nil {
		return err
	}
	h.typ = byte(v)
	n, err := r.u32()
	if err != nil {
		return err
	}
	if err := h.readName(r, int(int32(n))); err != nil {
		return err
	}
	return h.readSeq32(r)
}

func (h *msgHeader) readBinaryOld(r *reader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	if err := h.readName(r, int(int32(n))); err != nil {
		return err
	}
	if h.typ, err = r.u8(); err != nil {
		return err
	}
	return h.readSeq32(r)
}

func (h *msgHeader) readCompact(r *reader) error {
	if err := r.skip(1); err != nil { // 0x82
		return err
	}
	vt, err := r.u8()
	if err != nil {
		return err
	}
	if vt&compactVersionMask != compactVersion {
		return codec.Errorf(Name, codec.ErrMalformed, "compact protocol version %d, want %d", vt&compactVersionMask, compactVersion)
	}
	h.typ = vt >> compactTypeShift
	h.seqOff = r.pos
	seq, err := r.uvarint(5)
	if err != nil {
		return err
	}
	if seq > math.MaxUint32 {
		return codec.Errorf(Name, codec.ErrMalformed, "seqid varint %d overflows 32 bits", seq)
	}
	h.seqID, h.seqLen = uint32(seq), r.pos-h.seqOff
	n, err := r.length()
	if err != nil {
		return err
	}
	return h.readName(r, n)
}

// finish fills the message from the frame info.
func (d *decoded) finish(frame []byte) {
	fi := &d.info
	d.attrs.headers = fi.headers
	name := frame[fi.nameOff:fi.nameEnd]
	s := string(name)
	if i := bytes.IndexByte(name, ':'); i >= 0 {
		d.attrs.service, d.attrs.method, d.attrs.multiplexed = s[:i], s[i+1:], true
	} else {
		d.attrs.method = s
	}
	d.msg = codec.Message{ID: uint64(fi.seqID), Raw: frame, Attrs: &d.attrs, Private: fi}
	switch fi.typ {
	case msgCall:
		d.msg.Kind = codec.KindRequest
	case msgOneway:
		d.msg.Kind = codec.KindOneway
	case msgReply:
		d.msg.Kind = codec.KindResponse
	case msgException:
		d.msg.Kind, d.msg.Status = codec.KindResponse, codec.StatusError
	}
}
