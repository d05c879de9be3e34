package dubbo

import (
	"encoding/binary"
	"strconv"
	"sync"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Attribute names taken from a request body rather than its attachments.
// The interface and the method are what routes and authorization match
// most; protocols/dubbo/control names them through AttrInterface and
// AttrMethod.
const (
	AttrInterface = "interface"
	AttrMethod    = "method"
	keyVersion    = "version"
	keyPath       = "path"
)

// frame is a decoded message and its lazy attributes in one allocation.
// Message.Private points back at the frame.
type frame struct {
	msg   codec.Message
	attrs attrs
}

// attrs are a message's attributes. A request's service path, version and
// method are read at Decode; the attachments only when another attribute is
// asked for, because reaching them means stepping over every argument.
type attrs struct {
	body    []byte
	flags   byte
	request bool // a hessian2 request with the leading strings below
	hasAtts bool // the body ends with an attachments map (requests; responses with flag 3-5)

	iface, version, method string
	// Offsets in body: the service path, version, method, and what follows
	// the method (the parameter type descriptor). A response's value starts at 0.
	pathOff, versionOff, methodOff, argsOff int

	respFlag int64 // the body flag of an OK response

	once    sync.Once // the attachments may be read from the reader or the writer goroutine
	parsed  bool
	err     error
	mapOff  int     // start of the attachments map
	mapBody int     // first entry of the map (after its tag and type)
	mapEnd  int     // just past the map's 'Z'
	entries []entry // the map's entries in wire order
}

// entry is one attachment. value is set only for routable values (strings,
// null, numbers, booleans); keys that are not strings are kept only as spans.
type entry struct {
	key, value          string
	keyOff, valOff, end int
	stringKey, routable bool
}

// Decode implements codec.Codec.
func (c *Codec) Decode(b []byte) (*codec.Message, error) {
	if len(b) < headerLen {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "frame of %d bytes is shorter than the header", len(b))
	}
	if b[0] != magicHigh || b[1] != magicLow {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "bad magic % x", b[:2])
	}
	if n := uint64(binary.BigEndian.Uint32(b[12:])); n != uint64(len(b)-headerLen) {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "body length %d, but the frame has %d body bytes", n, len(b)-headerLen)
	}
	if len(b) > c.maxFrame {
		return nil, codec.Errorf(Name, codec.ErrTooLarge, "frame of %d bytes is over the limit of %d", len(b), c.maxFrame)
	}
	f := &frame{}
	f.attrs.body = b[headerLen:]
	f.attrs.flags = b[2]
	f.msg = codec.Message{
		ID:      binary.BigEndian.Uint64(b[4:]),
		Raw:     b,
		Attrs:   &f.attrs,
		Private: f,
	}
	var err error
	if b[2]&flagRequest != 0 {
		err = f.decodeRequest()
	} else {
		err = f.decodeResponse(b[3])
	}
	if err != nil {
		return nil, err
	}
	return &f.msg, nil
}

func (f *frame) decodeRequest() error {
	a := &f.attrs
	switch {
	case a.flags&flagEvent != 0:
		// Heartbeats (body null) and other events (readonly) carry no call.
		f.msg.Kind = codec.KindHeartbeat
		return nil
	case a.flags&flagTwoWay != 0:
		f.msg.Kind = codec.KindRequest
	default:
		f.msg.Kind = codec.KindOneway
	}
	if a.flags&serialMask != serialHessian2 {
		// Still forwarded and multiplexed, but without attributes.
		return nil
	}
	r := valueReader{body: a.body}
	defer r.release()
	var err error
	if _, a.pathOff, err = r.leadingStr(0); err != nil {
		return malformed("dubbo version", err)
	}
	if a.iface, a.versionOff, err = r.leadingStr(a.pathOff); err != nil {
		return malformed("service path", err)
	}
	if a.version, a.methodOff, err = r.leadingStr(a.versionOff); err != nil {
		return malformed("service version", err)
	}
	if a.method, a.argsOff, err = r.leadingStr(a.methodOff); err != nil {
		return malformed("method", err)
	}
	a.request, a.hasAtts = true, true
	return nil
}

func (f *frame) decodeResponse(status byte) error {
	a := &f.attrs
	if a.flags&flagEvent != 0 {
		f.msg.Kind = codec.KindHeartbeatResponse
		if status != statusOK {
			f.msg.Status = codec.StatusError
		}
		return nil
	}
	f.msg.Kind = codec.KindResponse
	if status != statusOK {
		// The body is the error message, a string.
		f.msg.Status = codec.StatusError
		return nil
	}
	if a.flags&serialMask != serialHessian2 {
		return nil
	}
	// The flag is read by the skipper's integer reader: the library would
	// cost a decoder per response for one byte.
	s := scanner{b: a.body}
	flag, next, err := s.int(0)
	if err != nil {
		return malformed("response flag", err)
	}
	switch flag {
	case respException, respExceptionWithAtts:
		f.msg.Status = codec.StatusError
	case respValue, respNull, respValueWithAtts, respNullWithAtts:
	default:
		return codec.Errorf(Name, codec.ErrMalformed, "unknown response flag %d", flag)
	}
	a.argsOff, a.respFlag = next, flag
	if flag >= respExceptionWithAtts {
		a.hasAtts = true
	}
	return nil
}

func malformed(what string, err error) error {
	return codec.Errorf(Name, codec.ErrMalformed, "reading the %s: %v", what, err)
}

// Get implements codec.Attributes. The service path, version and method of a
// request are answered from the body, without touching the attachments.
func (a *attrs) Get(key string) (string, bool) {
	if a.request {
		switch key {
		case AttrInterface:
			return a.iface, true
		case AttrMethod:
			return a.method, true
		case keyVersion:
			return a.version, true
		}
	}
	if traceKeyAbsent(a.body, key) || a.parse() != nil {
		return "", false
	}
	for i := len(a.entries) - 1; i >= 0; i-- {
		if e := &a.entries[i]; e.routable && e.key == key {
			return e.value, true
		}
	}
	return "", false
}

// Range implements codec.Attributes: the body's interface, method and version
// first, then every attachment with a string key and a routable value. An
// attachment named like a body field is hidden by it. Attachments that cannot
// be read are left out.
func (a *attrs) Range(fn func(key, value string) bool) {
	if a.request {
		if !fn(AttrInterface, a.iface) || !fn(AttrMethod, a.method) || !fn(keyVersion, a.version) {
			return
		}
	}
	if a.parse() != nil {
		return
	}
	for i := range a.entries {
		e := &a.entries[i]
		if !e.routable || a.request && (e.key == AttrInterface || e.key == AttrMethod || e.key == keyVersion) {
			continue
		}
		if !fn(e.key, e.value) {
			return
		}
	}
}

// parse finds and reads the attachments map once.
func (a *attrs) parse() error {
	a.once.Do(func() {
		a.parsed = true
		if a.hasAtts {
			a.err = a.parseAttachments()
		}
	})
	return a.err
}

// parseAttachments steps over the arguments (or a response's value) with the
// codec's skipper, then reads the map's keys and plain values with the
// library. The skipper also steps over attachment values the library is not
// given (objects, lists, maps: they may refer to classes or values defined in
// the arguments, which the library never saw).
func (a *attrs) parseAttachments() error {
	s := scanner{b: a.body}
	r := valueReader{body: a.body}
	defer r.release()
	off, err := a.skipArgs(&s, &r)
	if err != nil {
		return err
	}
	if err := s.need(off, 1); err != nil {
		return malformed("attachments", err)
	}
	a.mapOff = off
	switch s.b[off] {
	case 'H':
		off++
	case 'M':
		if off, err = s.skipType(off + 1); err != nil {
			return malformed("attachments type", err)
		}
	default:
		return codec.Errorf(Name, codec.ErrMalformed, "attachments are not a map (tag 0x%02x)", s.b[off])
	}
	a.mapBody = off
	a.entries = make([]entry, 0, 8)
	for {
		if err := s.need(off, 1); err != nil {
			return malformed("attachments", err)
		}
		if s.b[off] == 'Z' {
			a.mapEnd = off + 1
			return nil
		}
		if off, err = a.readEntry(&s, &r, off); err != nil {
			return malformed("attachments", err)
		}
	}
}

// skipArgs steps over what comes before the attachments: a request's
// parameter descriptor and arguments, or a response's value or exception.
func (a *attrs) skipArgs(s *scanner, r *valueReader) (int, error) {
	if !a.request {
		if a.respFlag == respNullWithAtts {
			return a.argsOff, nil
		}
		off, err := s.skip(a.argsOff, 0)
		if err != nil {
			return 0, malformed("response value", err)
		}
		return off, nil
	}
	desc, off, err := r.str(a.argsOff)
	if err != nil {
		return 0, malformed("parameter types", err)
	}
	n, err := countParams(desc)
	if err != nil {
		return 0, err
	}
	for i := 0; i < n; i++ {
		if off, err = s.skip(off, 0); err != nil {
			return 0, malformed("argument "+strconv.Itoa(i), err)
		}
	}
	return off, nil
}

// readEntry reads one attachment: a string key and a plain value with the
// library, anything else only as a span.
func (a *attrs) readEntry(s *scanner, r *valueReader, off int) (int, error) {
	e := entry{keyOff: off}
	var err error
	if isStringTag(s.b[off]) {
		e.key, e.valOff, err = r.str(off)
		e.stringKey = true
	} else {
		e.valOff, err = s.skip(off, 0)
	}
	if err != nil {
		return 0, err
	}
	if e.stringKey {
		e.value, e.end, e.routable, err = r.routable(e.valOff)
		if err != nil {
			return 0, err
		}
	}
	if !e.routable {
		// Dubbo 3 allows any object as an attachment; those are not routable.
		if e.end, err = s.skip(e.valOff, 0); err != nil {
			return 0, err
		}
	}
	a.entries = append(a.entries, e)
	return e.end, nil
}

// countParams counts the types in a JVM method descriptor's parameter list,
// like "Ljava/lang/String;I[Lorg/example/User;". An empty descriptor means no
// arguments.
func countParams(desc string) (int, error) {
	n := 0
	for i := 0; i < len(desc); n++ {
		for i < len(desc) && desc[i] == '[' {
			i++
		}
		if i == len(desc) {
			return 0, codec.Errorf(Name, codec.ErrMalformed, "parameter types %q end inside an array type", desc)
		}
		switch desc[i] {
		case 'Z', 'B', 'C', 'D', 'F', 'I', 'J', 'S', 'V':
			i++
		case 'L':
			j := i
			for j < len(desc) && desc[j] != ';' {
				j++
			}
			if j == len(desc) {
				return 0, codec.Errorf(Name, codec.ErrMalformed, "parameter types %q: class name without ';'", desc)
			}
			i = j + 1
		default:
			return 0, codec.Errorf(Name, codec.ErrMalformed, "parameter types %q: bad type letter %q", desc, desc[i])
		}
	}
	return n, nil
}

// DecodeHead implements codec.HeadDecoder: a request's kind and ID are in
// its 16-byte header, so a request the proxy refuses before it is whole
// (too large for a buffer limit, or too slow) gets Dubbo's bad request
// answer.
func (c *Codec) DecodeHead(b []byte) (*codec.Message, bool) {
	if len(b) < headerLen || b[0] != magicHigh || b[1] != magicLow || b[2]&flagRequest == 0 {
		return nil, false
	}
	m := &codec.Message{ID: binary.BigEndian.Uint64(b[4:]), Kind: codec.KindOneway}
	switch {
	case b[2]&flagEvent != 0:
		m.Kind = codec.KindHeartbeat
	case b[2]&flagTwoWay != 0:
		m.Kind = codec.KindRequest
	}
	return m, true
}
