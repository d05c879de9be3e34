package dubbo

import (
	"fmt"
	"strconv"
	"sync"

	hessian "github.com/apache/dubbo-go-hessian2"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Values are decoded and encoded with github.com/apache/dubbo-go-hessian2
// v1.12.5, the Hessian 2 library of dubbo-go. This file adapts it to a codec
// that works on byte offsets: the codec copies every byte it does not change,
// so it must know where each value it reads starts and ends. Only stepping
// over values without building them is done by the codec itself (skip.go).

// libWindow is the buffer size of pooled library decoders. The leading strings
// of a request and most attachment maps fit in it.
const libWindow = 1024

var decoders = sync.Pool{New: func() any { return hessian.NewDecoderSize(nil, libWindow) }}

// valueReader reads single values of a body with the library's decoder.
//
// The decoder reads through a bufio.Reader. Its window of the body is never
// larger than its buffer, so the first read pulls in the whole window and the
// body offset after a value is the window's end minus d.Buffered(). A value
// that runs past a short window is read again with a decoder sized to the
// rest of the body.
type valueReader struct {
	body   []byte
	d      *hessian.Decoder
	pooled bool
	start  int  // body offset of the window
	end    int  // body offset just past the window
	fresh  bool // nothing read since the window was opened
}

// release returns the pooled decoder.
func (r *valueReader) release() {
	if r.pooled {
		decoders.Put(r.d)
	}
	r.d, r.pooled = nil, false
}

// pos is the body offset of the decoder's next byte.
func (r *valueReader) pos() int {
	if r.fresh {
		return r.start
	}
	return r.end - r.d.Buffered()
}

// open points the decoder at body[off:], at most libWindow bytes of it unless
// whole is set.
func (r *valueReader) open(off int, whole bool) {
	end := len(r.body)
	switch {
	case end-off <= libWindow || !whole:
		end = min(end, off+libWindow)
		if !r.pooled {
			r.d, r.pooled = decoders.Get().(*hessian.Decoder), true
		}
		r.d.Reset(r.body[off:end])
	default:
		r.release()
		r.d = hessian.NewDecoderSize(r.body[off:end], end-off)
	}
	r.start, r.end, r.fresh = off, end, true
}

// seek moves to off, within the window if it can.
func (r *valueReader) seek(off int) {
	if r.d == nil || off < r.pos() || off > r.end {
		r.open(off, false)
		return
	}
	if n := off - r.pos(); n > 0 {
		_, _ = r.d.Discard(n) // within the window, so it cannot come up short
		r.fresh = false
	}
}

// value decodes the value at off and returns it with the offset just past it.
// The caller has checked the leading byte: only strings, nulls, booleans and
// integers are handed to the library (see skip.go for why not the rest).
func (r *valueReader) value(off int) (any, int, error) {
	r.seek(off)
	v, next, err := r.decodeChecked(off)
	if err != nil && r.end < len(r.body) {
		// The value may run past the window: read it with all the rest in view.
		r.open(off, true)
		v, next, err = r.decodeChecked(off)
	}
	return v, next, err
}

// decodeChecked decodes the value at off, where the decoder stands, and checks
// that the skipper agrees on where it ends: the codec copies the bytes around
// it by these offsets. (At the end of a window, the library takes a missing
// chunk tag for the end of a chunked string; the check catches that.)
func (r *valueReader) decodeChecked(off int) (any, int, error) {
	v, err := r.decode()
	if err != nil {
		return nil, 0, err
	}
	next := r.pos()
	sc := scanner{b: r.body}
	if end, err := sc.skip(off, 0); err != nil || end != next {
		return nil, 0, fmt.Errorf("hessian2 decoder read the value at %d up to %d, the skipper to %d (%v)", off, next, end, err)
	}
	return v, next, nil
}

// decode runs the library decoder. It panics on some malformed strings (a
// lone surrogate at the end of a short string slices past its buffer); that
// is bad input, so it becomes an error.
func (r *valueReader) decode() (v any, err error) {
	defer func() {
		if p := recover(); p != nil {
			v, err = nil, fmt.Errorf("hessian2 decoder failed: %v", p)
		}
	}()
	r.fresh = false
	return r.d.DecodeValue()
}

// leadingStr reads one of the strings that start a request body. It runs on
// every request, so a short string of plain ASCII (every Dubbo version,
// service name, version and method name in practice) is copied straight from
// the body: the library's decoder costs three allocations per string and
// three per reset, which made Decode about 4x slower (README.md, Benchmarks).
// Anything else (non-ASCII, chunked, null) is read by the library.
func (r *valueReader) leadingStr(off int) (string, int, error) {
	if s, next, ok := asciiString(r.body, off); ok {
		return s, next, nil
	}
	return r.str(off)
}

// asciiString reads a string of 0-1023 ASCII characters at off, or gives ok
// false. For ASCII the character count is the byte count.
func asciiString(b []byte, off int) (s string, next int, ok bool) {
	if off >= len(b) {
		return "", 0, false
	}
	n, start := 0, off+1
	switch tag := b[off]; {
	case tag <= 0x1f:
		n = int(tag)
	case tag >= 0x30 && tag <= 0x33 && off+1 < len(b):
		n, start = int(tag-0x30)<<8|int(b[off+1]), off+2
	default:
		return "", 0, false
	}
	if start+n > len(b) {
		return "", 0, false
	}
	for _, c := range b[start : start+n] {
		if c >= 0x80 {
			return "", 0, false
		}
	}
	return string(b[start : start+n]), start + n, true
}

// str reads a string, or a null as "", at off with the library.
func (r *valueReader) str(off int) (string, int, error) {
	if err := r.check(off, func(tag byte) bool { return isStringTag(tag) || tag == 'N' }); err != nil {
		return "", 0, err
	}
	v, next, err := r.value(off)
	if err != nil {
		return "", 0, err
	}
	s, _ := v.(string) // nil for 'N'
	return s, next, nil
}

// routable reads an attachment value that routes can match: a string, null
// (""), boolean or integer, as text. ok is false for other values, which the
// caller steps over.
func (r *valueReader) routable(off int) (value string, next int, ok bool, err error) {
	if off >= len(r.body) || !isRoutableTag(r.body[off]) {
		return "", 0, false, nil
	}
	v, next, err := r.value(off)
	if err != nil {
		return "", 0, false, err
	}
	switch x := v.(type) {
	case nil:
		return "", next, true, nil
	case string:
		return x, next, true, nil
	case bool:
		return strconv.FormatBool(x), next, true, nil
	case int32:
		return strconv.FormatInt(int64(x), 10), next, true, nil
	case int64:
		return strconv.FormatInt(x, 10), next, true, nil
	}
	return "", 0, false, fmt.Errorf("hessian2 decoder read an attachment value as %T", v)
}

func (r *valueReader) check(off int, want func(byte) bool) error {
	if off >= len(r.body) {
		return errShort
	}
	if !want(r.body[off]) {
		return badTag(r.body[off])
	}
	return nil
}

// isIntTag says whether a value is an int or a long.
func isIntTag(tag byte) bool {
	return tag >= 0x80 || tag >= 0x38 && tag <= 0x3f || tag == 'I' || tag == 'Y' || tag == 'L'
}

// isRoutableTag says whether a value is one routes can match: a string, null,
// boolean or integer.
func isRoutableTag(tag byte) bool {
	return isStringTag(tag) || isIntTag(tag) || tag == 'N' || tag == 'T' || tag == 'F'
}

var encoders = sync.Pool{New: func() any { return hessian.NewEncoder() }}

// stringWriter writes Hessian strings with the library's Encoder. One pooled
// Encoder serves a whole frame; each string is copied out as soon as it is
// written. Call release when done.
type stringWriter struct {
	e *hessian.Encoder
}

func (w *stringWriter) append(dst []byte, s string) ([]byte, error) {
	if w.e == nil {
		w.e = encoders.Get().(*hessian.Encoder)
	}
	n := len(w.e.Buffer())
	if err := w.e.Encode(s); err != nil {
		// Not expected for a string; kept an error rather than a panic.
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "hessian2 encoder refused a string: %v", err)
	}
	return append(dst, w.e.Buffer()[n:]...), nil
}

// release empties the Encoder and returns it to the pool.
func (w *stringWriter) release() {
	if w.e != nil {
		w.e.ReuseBufferClean()
		encoders.Put(w.e)
		w.e = nil
	}
}
