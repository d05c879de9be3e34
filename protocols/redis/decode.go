package redis

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Attribute names a request carries.
const (
	// AttrCommand is the command name in upper case ("GET").
	AttrCommand = "command"
	// AttrKey is the command's first key, by the command table; absent for
	// commands without keys.
	AttrKey = "key"
	// AttrHashKey is the part of the first key a consistent hash should use:
	// the hash tag (the text between the first '{' and the next '}', when not
	// empty), else the whole key; the rule of Redis Cluster's slots. A route
	// over a pool of servers hashes on it (hash_policy: [{attributes:
	// [hash_key]}]) so keys sharing a tag share a server. Channels are not
	// keys: pub/sub commands have none, so a pool serves every channel from
	// one server and PUBLISH reaches the subscribers.
	AttrHashKey = "hash_key"
	// AttrStripPrefix is not decoded: a route's request mutation with this
	// name removes the value from the front of every key the command carries.
	AttrStripPrefix = "redis.strip_prefix"
)

// command is a decoded request: the message's Private and its Attributes.
type command struct {
	args [][]byte // args[0] is the name as sent
	name string   // upper case
	spec *cmdSpec // nil for commands the table does not know
	// msg and argBuf share the command's allocation: most commands have a
	// handful of arguments.
	msg    codec.Message
	argBuf [4][]byte
}

func (cm *command) key() (string, bool) {
	if i := cm.firstKey(); i > 0 {
		return string(cm.args[i]), true
	}
	return "", false
}

// Get implements codec.Attributes.
func (cm *command) Get(k string) (string, bool) {
	switch k {
	case AttrCommand:
		return cm.name, true
	case AttrKey:
		return cm.key()
	case AttrHashKey:
		return cm.hashKey()
	}
	return "", false
}

func (cm *command) hashKey() (string, bool) {
	if cm.spec != nil && cm.spec.flags&flagChannel != 0 {
		return "", false
	}
	k, ok := cm.key()
	return hashTag(k), ok
}

// Range implements codec.Attributes.
func (cm *command) Range(fn func(k, v string) bool) {
	if !fn(AttrCommand, cm.name) {
		return
	}
	if k, ok := cm.key(); ok && fn(AttrKey, k) {
		if h, ok := cm.hashKey(); ok {
			fn(AttrHashKey, h)
		}
	}
}

// Decode parses one frame: a command from a client, an answer from a server.
func (c *redisCodec) Decode(frame []byte) (*codec.Message, error) {
	if len(frame) == 0 {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "empty frame")
	}
	if c.toServer {
		return c.decodeAnswer(frame)
	}
	m, err := decodeRequest(frame, c.opt.maxFrame)
	if err != nil {
		// A partial request: the proxy answers it with the bad-request
		// error before it closes the connection.
		return &codec.Message{Kind: codec.KindRequest, Raw: frame, Attrs: codec.None}, codec.Errorf(Name, codec.ErrMalformed, "Protocol error: %v", err)
	}
	return m, nil
}

func decodeRequest(frame []byte, maxFrame int) (*codec.Message, error) {
	cm := &command{}
	var err error
	if frame[0] == typeArray {
		cm.args, err = parseArgs(frame, maxFrame, cm.argBuf[:0])
	} else {
		cm.args, err = parseInline(frame)
	}
	if err != nil {
		return nil, err
	}
	if len(cm.args) == 0 {
		// Redis ignores empty lines and empty arrays; so does the proxy.
		return &codec.Message{Kind: codec.KindUnknown, Raw: frame, Attrs: codec.None}, nil
	}
	cm.spec, cm.name = lookup(cm.args[0])
	cm.msg = codec.Message{Kind: codec.KindRequest, Raw: frame, Attrs: cm, Private: cm}
	return &cm.msg, nil
}

// parseArgs reads an array of bulk strings; the slices point into frame.
// It reads each header in one pass (header), not with the scanner Split
// uses: every request goes through here, and its headers are short.
func parseArgs(frame []byte, maxFrame int, args [][]byte) ([][]byte, error) {
	n, p, err := header(frame, 0)
	if err != nil {
		return nil, err
	}
	if n < 0 || n > maxElements {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "command with %d arguments", n)
	}
	// Every argument takes at least 6 bytes ($0\r\n\r\n): a count larger
	// than the frame allows is a lie, not a reason to allocate.
	if int(n) > len(frame)/6 {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "command claims %d arguments in %d bytes", n, len(frame))
	}
	if int(n) > cap(args) {
		args = make([][]byte, 0, n)
	}
	for i := int64(0); i < n; i++ {
		if p >= len(frame) || frame[p] != typeBulk {
			return nil, codec.Errorf(Name, codec.ErrMalformed, "command argument %d is not a bulk string", i)
		}
		size, start, err := header(frame, p)
		if err != nil {
			return nil, err
		}
		if size < 0 {
			return nil, codec.Errorf(Name, codec.ErrMalformed, "null command argument")
		}
		if size > int64(maxFrame) || int64(start)+size+2 > int64(maxFrame) {
			return nil, codec.Errorf(Name, codec.ErrTooLarge, "bulk of %d bytes exceeds the %d-byte limit", size, maxFrame)
		}
		end := start + int(size) + 2
		if end > len(frame) {
			return nil, codec.Errorf(Name, codec.ErrMalformed, "truncated command")
		}
		if frame[end-2] != '\r' || frame[end-1] != '\n' {
			return nil, codec.Errorf(Name, codec.ErrMalformed, "bulk not ended by CRLF")
		}
		args = append(args, frame[start:end-2])
		p = end
	}
	if p != len(frame) {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "%d bytes after the command", len(frame)-p)
	}
	return args, nil
}

// maxHeader bounds a header's digits and sign, as length does.
const maxHeader = 19

// header reads the signed decimal that follows the type byte at pos, and
// its CRLF; it returns the number and where the next line starts.
func header(b []byte, pos int) (int64, int, error) {
	cr := -1
	for i := pos + 1; i < len(b) && i <= pos+1+maxHeader; i++ {
		if b[i] == '\r' {
			cr = i
			break
		}
	}
	switch {
	case cr < 0 && len(b) <= pos+1+maxHeader:
		return 0, 0, codec.Errorf(Name, codec.ErrMalformed, "truncated command")
	case cr < 0:
		return 0, 0, codec.Errorf(Name, codec.ErrMalformed, "bad length %q", b[pos+1:pos+1+maxHeader])
	case cr+1 >= len(b):
		return 0, 0, codec.Errorf(Name, codec.ErrMalformed, "truncated command")
	case b[cr+1] != '\n':
		return 0, 0, codec.Errorf(Name, codec.ErrMalformed, "line not ended by CRLF")
	}
	n, err := length(b[pos+1 : cr])
	return n, cr + 2, err
}

// parseInline splits an inline command on spaces, honouring double and single
// quotes as redis-cli writes them.
func parseInline(frame []byte) ([][]byte, error) {
	if frame[len(frame)-1] != '\n' {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "inline command not ended by LF")
	}
	line := bytes.TrimRight(frame, "\r\n")
	var args [][]byte
	for i := 0; i < len(line); {
		switch c := line[i]; {
		case c == ' ' || c == '\t':
			i++
		case c == '"' || c == '\'':
			end := bytes.IndexByte(line[i+1:], c)
			if end < 0 {
				return nil, codec.Errorf(Name, codec.ErrMalformed, "unbalanced quotes in inline command")
			}
			args = append(args, line[i+1:i+1+end])
			i += end + 2
		default:
			j := i
			for j < len(line) && line[j] != ' ' && line[j] != '\t' {
				j++
			}
			args = append(args, line[i:j])
			i = j
		}
	}
	return args, nil
}

// decodeAnswer decodes an answer on a connection to a server. The answers
// to the codec's own handshake (Handshake counted them in pending) answer no
// request: they come back as KindOneway marked handshakeAnswer, or as an
// error that ends the connection when the server refused.
func (c *redisCodec) decodeAnswer(frame []byte) (*codec.Message, error) {
	m, err := decodeAnswer(frame, c.opt.maxFrame)
	if err != nil {
		return nil, err
	}
	if n := c.pending.Load(); n > 0 && m.Kind == codec.KindResponse {
		c.pending.Add(-1)
		if m.Status != codec.StatusOK {
			names := c.opt.handshakeNames
			name := names[max(0, len(names)-int(n))]
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "upstream refused the proxy's %s: %s", name, firstLine(frame))
		}
		m.Kind, m.Private = codec.KindOneway, handshakeAnswer{}
	}
	return m, nil
}

// handshakeAnswer marks the answer to a command the codec itself sent.
type handshakeAnswer struct{}

func decodeAnswer(frame []byte, maxFrame int) (*codec.Message, error) {
	s := scanner{buf: frame, maxFrame: maxFrame}
	r, err := s.value(0, 0)
	if err != nil {
		return nil, err
	}
	if r.need > 0 || r.end != len(frame) {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "answer is not one whole value")
	}
	m := &codec.Message{Kind: codec.KindResponse, Raw: frame, Attrs: codec.None}
	switch answerType(frame) {
	case typeError, typeBlobError:
		m.Status = codec.StatusError
	case typePush:
		// Out of band (subscriptions, tracking): it answers no request, so
		// the proxy must not pair it with one.
		m.Kind = codec.KindOneway
	}
	return m, nil
}

// answerType is the type byte of the value an answer carries, past any RESP3
// attribute that annotates it.
func answerType(frame []byte) byte {
	if frame[0] != typeAttribute {
		return frame[0]
	}
	s := scanner{buf: frame, maxFrame: len(frame)}
	cr, _, err := s.line(0)
	if err != nil {
		return frame[0]
	}
	n, err := length(frame[1:cr])
	if err != nil {
		return frame[0]
	}
	p := cr + 2
	for i := int64(0); i < 2*n; i++ {
		r, err := s.value(p, 1)
		if err != nil || r.need > 0 {
			return frame[0]
		}
		p = r.end
	}
	if p < len(frame) {
		return frame[p]
	}
	return frame[0]
}

func firstLine(frame []byte) string {
	if i := bytes.IndexByte(frame, '\r'); i > 0 {
		frame = frame[:i]
	}
	return strings.TrimPrefix(string(frame), "-")
}

// value is a parsed RESP value, for answers the handler must look into
// (merging split commands, cluster slot maps, redirections).
type value struct {
	t     byte
	str   []byte  // simple, error, bulk, verbatim, double, big number, bool
	n     int64   // integer
	elems []value // arrays, sets, pushes; maps as key, value, key, value
	null  bool
}

// parseValue parses a whole frame the scanner already accepted.
func parseValue(b []byte) (value, int, error) {
	if len(b) == 0 {
		return value{}, 0, codec.Errorf(Name, codec.ErrMalformed, "empty value")
	}
	// A line ends at its first LF, which must follow a CR, as the scanner
	// reads it: a bare CR inside the line is part of it.
	lf := bytes.IndexByte(b, '\n')
	if lf < 2 || b[lf-1] != '\r' {
		return value{}, 0, codec.Errorf(Name, codec.ErrMalformed, "truncated value")
	}
	cr := lf - 1
	t, head, next := b[0], b[1:cr], cr+2
	switch t {
	case typeSimple, typeError, typeDouble, typeBigNumber, typeBool:
		return value{t: t, str: head}, next, nil
	case typeNull:
		return value{t: t, null: true}, next, nil
	case typeInteger:
		n, err := strconv.ParseInt(string(head), 10, 64)
		if err != nil {
			return value{}, 0, codec.Errorf(Name, codec.ErrMalformed, "bad integer %q", head)
		}
		return value{t: t, n: n}, next, nil
	case typeBulk, typeBlobError, typeVerbatim:
		n, err := length(head)
		if err != nil {
			return value{}, 0, err
		}
		if n < 0 {
			return value{t: t, null: true}, next, nil
		}
		if int64(len(b)-next) < n+2 {
			return value{}, 0, codec.Errorf(Name, codec.ErrMalformed, "truncated bulk")
		}
		return value{t: t, str: b[next : next+int(n)]}, next + int(n) + 2, nil
	case typeArray, typeSet, typePush, typeMap, typeAttribute:
		n, err := length(head)
		if err != nil {
			return value{}, 0, err
		}
		if n < 0 {
			return value{t: t, null: true}, next, nil
		}
		if t == typeMap || t == typeAttribute {
			n *= 2
		}
		if n > int64(len(b)/3) { // each element takes at least 3 bytes ("_\r\n")
			return value{}, 0, codec.Errorf(Name, codec.ErrMalformed, "count %d past the frame", n)
		}
		v := value{t: t, elems: make([]value, 0, n)}
		p := next
		for i := int64(0); i < n; i++ {
			e, used, err := parseValue(b[p:])
			if err != nil {
				return value{}, 0, err
			}
			v.elems = append(v.elems, e)
			p += used
		}
		if t == typeAttribute {
			inner, used, err := parseValue(b[p:])
			return inner, p + used, err
		}
		return v, p, nil
	}
	return value{}, 0, codec.Errorf(Name, codec.ErrMalformed, "unknown type byte %q", t)
}

// text is a value's string form for bulk-like and simple values.
func (v value) text() string {
	if v.t == typeInteger {
		return strconv.FormatInt(v.n, 10)
	}
	return string(v.str)
}
