package redis

import (
	"bytes"
	"strconv"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// RESP2 and RESP3 type bytes, each with its grammar. Every line ends in CRLF.
const (
	typeSimple    = '+' // +<text>
	typeError     = '-' // -<text>
	typeInteger   = ':' // :<int64>
	typeBulk      = '$' // $<length>\r\n<bytes> ($-1: RESP2 null)
	typeArray     = '*' // *<count> then count values (*-1: RESP2 null)
	typeNull      = '_' // _ (RESP3)
	typeBool      = '#' // #t or #f (RESP3)
	typeDouble    = ',' // ,<float> (RESP3)
	typeBigNumber = '(' // (<digits> (RESP3)
	typeBlobError = '!' // !<length>\r\n<bytes> (RESP3)
	typeVerbatim  = '=' // =<length>\r\n<fmt>:<bytes> (RESP3)
	typeMap       = '%' // %<pairs> then 2*pairs values (RESP3)
	typeSet       = '~' // ~<count> then count values (RESP3)
	typeAttribute = '|' // |<pairs> then 2*pairs values, then the value they annotate (RESP3)
	typePush      = '>' // ><count> then count values (RESP3, out of band)
)

// Limits on what the wire may claim. Redis itself caps inline commands at
// 64 KiB and multibulk lengths at 1M-ish; nesting has no use past a few levels.
const (
	maxLine     = 64 << 10
	maxElements = 1 << 20
	maxDepth    = 32
	// minGrowth is the least Split asks for past an incomplete frame's
	// bytes (see growth): the proxy's read buffers start at 16 KiB.
	minGrowth = 16 << 10
)

// scanner finds the end of one RESP value. It reports how many more bytes it
// needs at least, never past the value's real end, so the proxy buffers no
// more than the frame.
type scanner struct {
	buf      []byte
	maxFrame int
	elements int // across the whole frame, so nested arrays share one cap
}

// errNeed is returned with a positive need when buf ends inside the value.
type scanResult struct {
	end  int // index just past the value, when need == 0
	need int
}

// line returns the index of the CR of the line that starts at pos, or need.
func (s *scanner) line(pos int) (int, int, error) {
	i := bytes.IndexByte(s.buf[pos:], '\n')
	if i < 0 {
		if len(s.buf)-pos > maxLine {
			return 0, 0, codec.Errorf(Name, codec.ErrTooLarge, "line longer than %d bytes", maxLine)
		}
		return 0, 1, nil
	}
	if i == 0 || s.buf[pos+i-1] != '\r' {
		return 0, 0, codec.Errorf(Name, codec.ErrMalformed, "line not ended by CRLF")
	}
	if i > maxLine {
		return 0, 0, codec.Errorf(Name, codec.ErrTooLarge, "line longer than %d bytes", maxLine)
	}
	return pos + i - 1, 0, nil
}

// length parses the signed decimal of a header line; it allocates nothing.
func length(b []byte) (int64, error) {
	neg := len(b) > 0 && b[0] == '-'
	digits := b
	if neg {
		digits = b[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, codec.Errorf(Name, codec.ErrMalformed, "bad length %q", b)
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, codec.Errorf(Name, codec.ErrMalformed, "bad length %q", b)
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

// value scans the value that starts at pos.
func (s *scanner) value(pos, depth int) (scanResult, error) {
	if pos >= len(s.buf) {
		return scanResult{need: 1}, nil
	}
	if depth > maxDepth {
		return scanResult{}, codec.Errorf(Name, codec.ErrTooLarge, "values nested deeper than %d", maxDepth)
	}
	t := s.buf[pos]
	cr, need, err := s.line(pos)
	if err != nil || need > 0 {
		return scanResult{need: need}, err
	}
	next := cr + 2
	switch t {
	case typeSimple, typeError, typeInteger, typeNull, typeBool, typeDouble, typeBigNumber:
		return scanResult{end: next}, nil
	case typeBulk, typeBlobError, typeVerbatim:
		n, err := length(s.buf[pos+1 : cr])
		if err != nil {
			return scanResult{}, err
		}
		if n == -1 && t == typeBulk {
			return scanResult{end: next}, nil
		}
		if n < 0 {
			return scanResult{}, codec.Errorf(Name, codec.ErrMalformed, "negative length %d", n)
		}
		if n > int64(s.maxFrame) || int64(next)+n+2 > int64(s.maxFrame) {
			return scanResult{}, codec.Errorf(Name, codec.ErrTooLarge, "bulk of %d bytes exceeds the %d-byte limit", n, s.maxFrame)
		}
		end := next + int(n) + 2
		if end > len(s.buf) {
			return scanResult{need: end - len(s.buf)}, nil
		}
		if s.buf[end-2] != '\r' || s.buf[end-1] != '\n' {
			return scanResult{}, codec.Errorf(Name, codec.ErrMalformed, "bulk not ended by CRLF")
		}
		return scanResult{end: end}, nil
	case typeArray, typeSet, typePush, typeMap, typeAttribute:
		n, err := length(s.buf[pos+1 : cr])
		if err != nil {
			return scanResult{}, err
		}
		if n == -1 && t == typeArray {
			return scanResult{end: next}, nil
		}
		if n < 0 {
			return scanResult{}, codec.Errorf(Name, codec.ErrMalformed, "negative count %d", n)
		}
		if t == typeMap || t == typeAttribute {
			n *= 2
		}
		if n > maxElements || int64(s.elements)+n > maxElements {
			return scanResult{}, codec.Errorf(Name, codec.ErrTooLarge, "more than %d elements", maxElements)
		}
		s.elements += int(n)
		p := next
		for i := int64(0); i < n; i++ {
			r, err := s.value(p, depth+1)
			if err != nil || r.need > 0 {
				return r, err
			}
			p = r.end
		}
		if t == typeAttribute { // the annotated value follows
			return s.value(p, depth+1)
		}
		return scanResult{end: p}, nil
	}
	return scanResult{}, codec.Errorf(Name, codec.ErrMalformed, "unknown type byte %q", t)
}

// appendBulk appends a RESP bulk string.
func appendBulk(dst, b []byte) []byte {
	dst = append(dst, typeBulk)
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// appendBulkString is appendBulk for a string.
func appendBulkString(dst []byte, s string) []byte {
	dst = append(dst, typeBulk)
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// appendHeader appends a type byte and a count or length line.
func appendHeader(dst []byte, t byte, n int) []byte {
	dst = append(dst, t)
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// appendCommand writes args as a RESP array of bulk strings, the only form a
// server must accept.
func appendCommand(dst []byte, args ...[]byte) []byte {
	dst = appendHeader(dst, typeArray, len(args))
	for _, a := range args {
		dst = appendBulk(dst, a)
	}
	return dst
}

// appendError appends a simple error; CR and LF in msg would end the line
// early, so they become spaces.
func appendError(dst []byte, msg string) []byte {
	dst = append(dst, typeError)
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, '\r', '\n')
}

// appendNull appends a null in the client's protocol version.
func appendNull(dst []byte, resp3 bool) []byte {
	if resp3 {
		return append(dst, "_\r\n"...)
	}
	return append(dst, "$-1\r\n"...)
}

// appendMapHeader appends a map of n pairs: a RESP3 map or a RESP2 flat array.
func appendMapHeader(dst []byte, n int, resp3 bool) []byte {
	if resp3 {
		return appendHeader(dst, typeMap, n)
	}
	return appendHeader(dst, typeArray, 2*n)
}

// appendInt appends an integer reply.
func appendInt(dst []byte, n int64) []byte {
	dst = append(dst, typeInteger)
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}
