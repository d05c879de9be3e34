package dubbo

import (
	"encoding/binary"
	"errors"
	"strconv"
)

// This file is the one piece of Hessian 2.0 the codec still does itself:
// stepping over a value without building it. The codec needs that to reach
// the attachments map, which follows the call's arguments, and to step over
// attachment values that are not plain scalars. Everything that decodes or
// encodes a value goes through github.com/apache/dubbo-go-hessian2 (see
// hessian.go). v1.12.5 of that library cannot do this job:
//
//   - It has no skip API. Its only "skip" (NewDecoderWithSkip) drops objects
//     of unregistered classes after decoding their fields, without giving
//     them a reference number, so later back-references ('Q') resolve to the
//     wrong value or fail (TestLibraryCannotSkip).
//   - Its non-strict decoder does read unregistered classes (as maps), but it
//     builds every argument to find where the arguments end, sizes slices
//     from wire counts before reading any element, panics on negative counts
//     ("makeslice: len out of range", TestLibraryCannotSkip) and recurses
//     without a depth limit, so a small hostile frame can exhaust memory or
//     the goroutine stack (fatal, not recoverable).
//
// The skipper below allocates nothing, bounds nesting (maxDepth) and checks
// every count against the bytes left. TestScannerSkipsLibraryValues proves it
// lands exactly at the end of every kind of value the library writes.
//
// Grammar (Hessian 2.0 serialization), by leading byte:
//
//	x00-x1f  string, 0-31 chars          x20-x2f  binary, 0-15 bytes
//	x30-x33  string, 0-1023 chars (+1)   x34-x37  binary, 0-1023 bytes (+1)
//	x38-x3f  long, 3 bytes               'A' 'B'  binary chunk (+2 len)
//	'C'      class definition: name, field count, field names
//	'D'      double (+8)                 'F' 'T'  false, true
//	'H'      untyped map ... 'Z'         'I'      int (+4)
//	x4a      date in ms (+8)             x4b      date in minutes (+4)
//	'L'      long (+8)                   'M'      typed map: type ... 'Z'
//	'N'      null                        'O'      object: def index, fields
//	'Q'      reference: int              'R' 'S'  string chunk (+2 len in chars)
//	x55      typed list ... 'Z'          'V'      typed list: type, len
//	x57      untyped list ... 'Z'        'X'      untyped list: len
//	'Y'      long as int (+4)            x5b-x5f  double 0, 1, +1, +2, +4
//	x60-x6f  object, def index 0-15      x70-x77  typed list, len 0-7
//	x78-x7f  untyped list, len 0-7       x80-xbf  int, 1 byte
//	xc0-xcf  int, 2 bytes                xd0-xd7  int, 3 bytes
//	xd8-xef  long, 1 byte                xf0-xff  long, 2 bytes
//
// String lengths count UTF-16 units; the data is UTF-8 with characters
// outside the BMP written as two 3-byte surrogates (what Java writes).

var (
	errShort = errors.New("hessian value runs past the body")
	errDepth = errors.New("hessian values nested too deep")
)

// maxDepth bounds nesting so hostile input cannot grow the stack without end.
const maxDepth = 256

// scanner walks the values of one Hessian stream. Class definitions are
// numbered in stream order, so one scanner must see a body's values in order.
type scanner struct {
	b    []byte
	defs []int // field count of each class definition seen so far
}

func badTag(tag byte) error {
	return errors.New("hessian: unexpected tag 0x" + strconv.FormatUint(uint64(tag), 16))
}

// need checks that n bytes are available at off.
func (s *scanner) need(off, n int) error {
	if n < 0 || off > len(s.b)-n {
		return errShort
	}
	return nil
}

// skip returns the offset just past the value starting at off.
func (s *scanner) skip(off, depth int) (int, error) {
	if depth > maxDepth {
		return 0, errDepth
	}
	if err := s.need(off, 1); err != nil {
		return 0, err
	}
	tag := s.b[off]
	off++
	switch {
	case tag <= 0x1f:
		return s.chars(off, int(tag))
	case tag <= 0x2f:
		return s.fixed(off, int(tag-0x20))
	case tag <= 0x33:
		if err := s.need(off, 1); err != nil {
			return 0, err
		}
		return s.chars(off+1, int(tag-0x30)<<8|int(s.b[off]))
	case tag <= 0x37:
		if err := s.need(off, 1); err != nil {
			return 0, err
		}
		return s.fixed(off+1, int(tag-0x34)<<8|int(s.b[off]))
	case tag <= 0x3f:
		return s.fixed(off, 2)
	case tag >= 0x60 && tag <= 0x6f:
		return s.object(off, int(tag-0x60), depth)
	case tag >= 0x70 && tag <= 0x77:
		return s.typedList(off, int(tag-0x70), depth)
	case tag >= 0x78 && tag <= 0x7f:
		return s.values(off, int(tag-0x78), depth)
	case tag >= 0x80 && tag <= 0xbf, tag >= 0xd8 && tag <= 0xef:
		return off, nil
	case tag >= 0xc0 && tag <= 0xcf, tag >= 0xf0:
		return s.fixed(off, 1)
	case tag >= 0xd0 && tag <= 0xd7:
		return s.fixed(off, 2)
	}
	return s.skipLetter(tag, off, depth)
}

// skipLetter handles the tags in 0x40-0x5f.
func (s *scanner) skipLetter(tag byte, off, depth int) (int, error) {
	switch tag {
	case 'N', 'T', 'F', 0x5b, 0x5c:
		return off, nil
	case 0x5d:
		return s.fixed(off, 1)
	case 0x5e:
		return s.fixed(off, 2)
	case 'I', 'Y', 0x4b, 0x5f:
		return s.fixed(off, 4)
	case 'D', 'L', 0x4a:
		return s.fixed(off, 8)
	case 'R', 'S', 'A', 'B':
		return s.chunks(tag, off)
	case 'Q':
		_, next, err := s.int(off)
		return next, err
	case 'C':
		next, err := s.classDef(off)
		if err != nil {
			return 0, err
		}
		// A definition is written just before the object that uses it.
		return s.skip(next, depth+1)
	case 'O':
		idx, next, err := s.int(off)
		if err != nil {
			return 0, err
		}
		return s.object(next, int(idx), depth)
	case 'H':
		return s.untilEnd(off, depth)
	case 'M':
		next, err := s.skipType(off)
		if err != nil {
			return 0, err
		}
		return s.untilEnd(next, depth)
	case 0x55:
		next, err := s.skipType(off)
		if err != nil {
			return 0, err
		}
		return s.untilEnd(next, depth)
	case 'V':
		next, err := s.skipType(off)
		if err != nil {
			return 0, err
		}
		n, next, err := s.count(next)
		if err != nil {
			return 0, err
		}
		return s.values(next, n, depth)
	case 0x57:
		return s.untilEnd(off, depth)
	case 'X':
		n, next, err := s.count(off)
		if err != nil {
			return 0, err
		}
		return s.values(next, n, depth)
	}
	return 0, badTag(tag)
}

func (s *scanner) fixed(off, n int) (int, error) {
	if err := s.need(off, n); err != nil {
		return 0, err
	}
	return off + n, nil
}

// chars steps over n UTF-16 units of UTF-8 data.
func (s *scanner) chars(off, n int) (int, error) {
	for n > 0 {
		if off >= len(s.b) {
			return 0, errShort
		}
		c := s.b[off]
		if c < 0x80 {
			off++
			n--
			continue
		}
		size, units := 1, 1
		switch {
		case c&0xe0 == 0xc0:
			size = 2
		case c&0xf0 == 0xe0:
			size = 3
		case c&0xf8 == 0xf0:
			size, units = 4, 2
		default:
			return 0, errors.New("hessian: bad utf-8 in string")
		}
		if err := s.need(off, size); err != nil {
			return 0, err
		}
		off += size
		n -= units
	}
	return off, nil
}

// chunks steps over a chunked string ('R'/'S') or binary ('A'/'B') starting
// after its first tag.
func (s *scanner) chunks(tag byte, off int) (int, error) {
	for {
		if err := s.need(off, 2); err != nil {
			return 0, err
		}
		n := int(binary.BigEndian.Uint16(s.b[off:]))
		var err error
		if tag == 'R' || tag == 'S' {
			off, err = s.chars(off+2, n)
		} else {
			off, err = s.fixed(off+2, n)
		}
		if err != nil || tag == 'S' || tag == 'B' {
			return off, err
		}
		// After a non-final chunk comes another chunk of the same type.
		if err := s.need(off, 1); err != nil {
			return 0, err
		}
		next := s.b[off]
		switch {
		case tag == 'R' && (next == 'R' || next == 'S'), tag == 'A' && (next == 'A' || next == 'B'):
			tag = next
			off++
		case tag == 'R' && (next <= 0x1f || next >= 0x30 && next <= 0x33),
			tag == 'A' && (next >= 0x20 && next <= 0x2f || next >= 0x34 && next <= 0x37):
			return s.skip(off, 0)
		default:
			return 0, badTag(next)
		}
	}
}

// int reads an int or long in any of its encodings.
func (s *scanner) int(off int) (int64, int, error) {
	if err := s.need(off, 1); err != nil {
		return 0, 0, err
	}
	tag := s.b[off]
	off++
	b := s.b
	switch {
	case tag >= 0x80 && tag <= 0xbf:
		return int64(tag) - 0x90, off, nil
	case tag >= 0xc0 && tag <= 0xcf:
		if err := s.need(off, 1); err != nil {
			return 0, 0, err
		}
		return (int64(tag)-0xc8)<<8 | int64(b[off]), off + 1, nil
	case tag >= 0xd0 && tag <= 0xd7:
		if err := s.need(off, 2); err != nil {
			return 0, 0, err
		}
		return (int64(tag)-0xd4)<<16 | int64(b[off])<<8 | int64(b[off+1]), off + 2, nil
	case tag >= 0xd8 && tag <= 0xef:
		return int64(tag) - 0xe0, off, nil
	case tag >= 0xf0:
		if err := s.need(off, 1); err != nil {
			return 0, 0, err
		}
		return (int64(tag)-0xf8)<<8 | int64(b[off]), off + 1, nil
	case tag >= 0x38 && tag <= 0x3f:
		if err := s.need(off, 2); err != nil {
			return 0, 0, err
		}
		return (int64(tag)-0x3c)<<16 | int64(b[off])<<8 | int64(b[off+1]), off + 2, nil
	case tag == 'I', tag == 'Y':
		if err := s.need(off, 4); err != nil {
			return 0, 0, err
		}
		return int64(int32(binary.BigEndian.Uint32(b[off:]))), off + 4, nil
	case tag == 'L':
		if err := s.need(off, 8); err != nil {
			return 0, 0, err
		}
		return int64(binary.BigEndian.Uint64(b[off:])), off + 8, nil
	}
	return 0, 0, badTag(tag)
}

// count reads a non-negative length.
func (s *scanner) count(off int) (int, int, error) {
	n, next, err := s.int(off)
	if err != nil {
		return 0, 0, err
	}
	if n < 0 || n > int64(len(s.b)) {
		// Every counted item takes at least one byte.
		return 0, 0, errShort
	}
	return int(n), next, nil
}

// skipType steps over a list or map type: a string or a type reference.
func (s *scanner) skipType(off int) (int, error) {
	if err := s.need(off, 1); err != nil {
		return 0, err
	}
	if isStringTag(s.b[off]) {
		return s.skip(off, 0)
	}
	_, next, err := s.int(off)
	return next, err
}

func (s *scanner) classDef(off int) (int, error) {
	if err := s.need(off, 1); err != nil {
		return 0, err
	}
	if !isStringTag(s.b[off]) {
		return 0, badTag(s.b[off])
	}
	off, err := s.skip(off, 0)
	if err != nil {
		return 0, err
	}
	n, off, err := s.count(off)
	if err != nil {
		return 0, err
	}
	for i := 0; i < n; i++ {
		if off, err = s.skip(off, 0); err != nil {
			return 0, err
		}
	}
	s.defs = append(s.defs, n)
	return off, nil
}

func (s *scanner) object(off, def, depth int) (int, error) {
	if def < 0 || def >= len(s.defs) {
		return 0, errors.New("hessian: object refers to an undefined class")
	}
	return s.values(off, s.defs[def], depth)
}

func (s *scanner) typedList(off, n, depth int) (int, error) {
	off, err := s.skipType(off)
	if err != nil {
		return 0, err
	}
	return s.values(off, n, depth)
}

func (s *scanner) values(off, n, depth int) (int, error) {
	var err error
	for i := 0; i < n; i++ {
		if off, err = s.skip(off, depth+1); err != nil {
			return 0, err
		}
	}
	return off, nil
}

// untilEnd steps over values up to and including the closing 'Z'.
func (s *scanner) untilEnd(off, depth int) (int, error) {
	var err error
	for {
		if err := s.need(off, 1); err != nil {
			return 0, err
		}
		if s.b[off] == 'Z' {
			return off + 1, nil
		}
		if off, err = s.skip(off, depth+1); err != nil {
			return 0, err
		}
	}
}

func isStringTag(tag byte) bool {
	return tag <= 0x1f || tag >= 0x30 && tag <= 0x33 || tag == 'R' || tag == 'S'
}

// isScalar says whether a value with this leading byte holds no objects,
// lists, maps or references, so replacing it cannot shift Hessian's reference
// numbering for the values after it.
func isScalar(tag byte) bool {
	switch {
	case isStringTag(tag), tag >= 0x20 && tag <= 0x2f, tag >= 0x34 && tag <= 0x3f, tag >= 0x80:
		return true
	}
	switch tag {
	case 'N', 'T', 'F', 'I', 'Y', 'L', 'D', 0x4a, 0x4b, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f, 'A', 'B':
		return true
	}
	return false
}
