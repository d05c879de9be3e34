package thrift

import (
	"errors"
	"math"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// reader walks a message without building values. It never reads past b and
// refuses any element that would end past limit (the frame limit while
// splitting an unframed stream). When b ends too early it returns errShort
// with need set to a lower bound of the bytes still missing: the shortfall of
// the element it was reading plus, added level by level on the way out, the
// least the rest of each enclosing struct and container must still hold. A
// large list of small elements so asks for most of itself at once, instead of
// one element per call of Split.
type reader struct {
	b     []byte
	pos   int
	limit int
	need  int
}

// errShort means b ends before the message does; reader.need says by how much
// at least. It never leaves the package.
var errShort = errors.New("codec/thrift: short")

func (r *reader) ensure(n int) error {
	if n < 0 || n > r.limit-r.pos {
		return codec.Errorf(Name, codec.ErrTooLarge, "an element of %d bytes at offset %d runs past the limit of %d", n, r.pos, r.limit)
	}
	if have := len(r.b) - r.pos; n > have {
		r.need = n - have
		return errShort
	}
	return nil
}

func (r *reader) skip(n int) error {
	if err := r.ensure(n); err != nil {
		return err
	}
	r.pos += n
	return nil
}

func (r *reader) u8() (byte, error) {
	if err := r.ensure(1); err != nil {
		return 0, err
	}
	r.pos++
	return r.b[r.pos-1], nil
}

func (r *reader) u32() (uint32, error) {
	if err := r.ensure(4); err != nil {
		return 0, err
	}
	r.pos += 4
	return be32(r.b[r.pos-4:]), nil
}

// uvarint reads an unsigned LEB128 varint of at most max bytes.
func (r *reader) uvarint(max int) (uint64, error) {
	var v uint64
	for i := 0; i < max; i++ {
		if err := r.ensure(i + 1); err != nil {
			return 0, err
		}
		b := r.b[r.pos+i]
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			r.pos += i + 1
			return v, nil
		}
	}
	return 0, codec.Errorf(Name, codec.ErrMalformed, "varint at offset %d is longer than %d bytes", r.pos, max)
}

// length reads a compact length or count: a varint that fits an i32.
func (r *reader) length() (int, error) {
	v, err := r.uvarint(5)
	if err != nil {
		return 0, err
	}
	if v > math.MaxInt32 {
		return 0, codec.Errorf(Name, codec.ErrMalformed, "negative length before offset %d", r.pos)
	}
	return int(v), nil
}

// count checks that n elements of at least min bytes each fit the limit.
func (r *reader) count(n int64, min int) error {
	if n < 0 {
		return codec.Errorf(Name, codec.ErrMalformed, "negative count %d before offset %d", n, r.pos)
	}
	if n*int64(min) > int64(r.limit-r.pos) {
		return codec.Errorf(Name, codec.ErrTooLarge, "%d elements at offset %d cannot fit the limit of %d", n, r.pos, r.limit)
	}
	return nil
}

func tooDeep(pos int) error {
	return codec.Errorf(Name, codec.ErrTooLarge, "structs and containers nest deeper than %d at offset %d", maxDepth, pos)
}

func badType(t byte, pos int) error {
	return codec.Errorf(Name, codec.ErrMalformed, "unknown field type %d before offset %d", t, pos)
}

// Binary protocol types (TType).
const (
	bStop   = 0
	bBool   = 2
	bByte   = 3
	bDouble = 4
	bI16    = 6
	bI32    = 8
	bI64    = 10
	bString = 11
	bStruct = 12
	bMap    = 13
	bSet    = 14
	bList   = 15
	bUUID   = 16
)

// binaryMin is the least size of a value of each binary type; 0 marks an
// unknown type. binaryFixed marks types whose size is always the minimum.
var binaryMin = [...]int{
	bBool: 1, bByte: 1, bDouble: 8, bI16: 2, bI32: 4, bI64: 8,
	bString: 4, bStruct: 1, bMap: 6, bSet: 5, bList: 5, bUUID: 16,
}

var binaryFixed = [...]bool{
	bBool: true, bByte: true, bDouble: true, bI16: true, bI32: true, bI64: true, bUUID: true,
}

func binaryMinOf(t byte) int {
	if int(t) < len(binaryMin) {
		return binaryMin[t]
	}
	return 0
}

// skipBinaryStruct steps over the fields of a binary struct and its STOP.
func (r *reader) skipBinaryStruct(depth int) error {
	if depth > maxDepth {
		return tooDeep(r.pos)
	}
	for {
		t, err := r.u8()
		if err != nil || t == bStop {
			return err
		}
		if err := r.skip(2); err != nil { // field id
			return err
		}
		if err := r.skipBinary(t, depth); err != nil {
			if err == errShort {
				r.need++ // the STOP after this field
			}
			return err
		}
	}
}

func (r *reader) skipBinary(t byte, depth int) error {
	switch t {
	case bBool, bByte, bDouble, bI16, bI32, bI64, bUUID:
		return r.skip(binaryMin[t])
	case bString:
		n, err := r.u32()
		if err != nil {
			return err
		}
		if int32(n) < 0 {
			return codec.Errorf(Name, codec.ErrMalformed, "negative string length before offset %d", r.pos)
		}
		return r.skip(int(n))
	case bStruct:
		return r.skipBinaryStruct(depth + 1)
	case bMap:
		return r.skipBinaryMap(depth + 1)
	case bSet, bList:
		return r.skipBinaryList(depth + 1)
	}
	return badType(t, r.pos)
}

func (r *reader) skipBinaryList(depth int) error {
	if depth > maxDepth {
		return tooDeep(r.pos)
	}
	et, err := r.u8()
	if err != nil {
		return err
	}
	n32, err := r.u32()
	if err != nil {
		return err
	}
	n := int(int32(n32))
	if n == 0 {
		return nil
	}
	m := binaryMinOf(et)
	if m == 0 {
		return badType(et, r.pos)
	}
	return r.skipElems(n, m, binaryFixed[et], func() error { return r.skipBinary(et, depth) })
}

func (r *reader) skipBinaryMap(depth int) error {
	if depth > maxDepth {
		return tooDeep(r.pos)
	}
	kt, err := r.u8()
	if err != nil {
		return err
	}
	vt, err := r.u8()
	if err != nil {
		return err
	}
	n32, err := r.u32()
	if err != nil {
		return err
	}
	n := int(int32(n32))
	if n == 0 {
		return nil
	}
	km, vm := binaryMinOf(kt), binaryMinOf(vt)
	if km == 0 || vm == 0 {
		return badType(max(kt, vt), r.pos)
	}
	if err := r.count(int64(n), km+vm); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := r.skipBinary(kt, depth); err != nil {
			if err == errShort {
				r.need += vm + (n-i-1)*(km+vm)
			}
			return err
		}
		if err := r.skipBinary(vt, depth); err != nil {
			if err == errShort {
				r.need += (n - i - 1) * (km + vm)
			}
			return err
		}
	}
	return nil
}

// Compact protocol types.
const (
	cStop   = 0
	cTrue   = 1
	cFalse  = 2
	cByte   = 3
	cI16    = 4
	cI32    = 5
	cI64    = 6
	cDouble = 7
	cBinary = 8
	cList   = 9
	cSet    = 10
	cMap    = 11
	cStruct = 12
	cUUID   = 13
)

// compactMin is the least size of a compact value inside a container (a bool
// field carries its value in the field header instead); 0 marks an unknown type.
var compactMin = [...]int{
	cTrue: 1, cFalse: 1, cByte: 1, cI16: 1, cI32: 1, cI64: 1, cDouble: 8,
	cBinary: 1, cList: 1, cSet: 1, cMap: 1, cStruct: 1, cUUID: 16,
}

var compactFixed = [...]bool{cTrue: true, cFalse: true, cByte: true, cDouble: true, cUUID: true}

func compactMinOf(t byte) int {
	if int(t) < len(compactMin) {
		return compactMin[t]
	}
	return 0
}

// skipCompactStruct steps over the fields of a compact struct and its STOP.
func (r *reader) skipCompactStruct(depth int) error {
	if depth > maxDepth {
		return tooDeep(r.pos)
	}
	for {
		h, err := r.u8()
		if err != nil {
			return err
		}
		t := h & 0x0f
		if t == cStop {
			return nil
		}
		if h>>4 == 0 { // no delta: a zigzag i16 field id follows
			if _, err := r.uvarint(3); err != nil {
				return err
			}
		}
		if t == cTrue || t == cFalse {
			continue // the field header is the value
		}
		if err := r.skipCompact(t, depth); err != nil {
			if err == errShort {
				r.need++ // the STOP after this field
			}
			return err
		}
	}
}

// skipCompact steps over one value as it appears inside a container.
func (r *reader) skipCompact(t byte, depth int) error {
	switch t {
	case cTrue, cFalse, cByte, cDouble, cUUID:
		return r.skip(compactMin[t])
	case cI16:
		_, err := r.uvarint(3)
		return err
	case cI32:
		_, err := r.uvarint(5)
		return err
	case cI64:
		_, err := r.uvarint(10)
		return err
	case cBinary:
		n, err := r.length()
		if err != nil {
			return err
		}
		return r.skip(n)
	case cStruct:
		return r.skipCompactStruct(depth + 1)
	case cList, cSet:
		return r.skipCompactList(depth + 1)
	case cMap:
		return r.skipCompactMap(depth + 1)
	}
	return badType(t, r.pos)
}

func (r *reader) skipCompactList(depth int) error {
	if depth > maxDepth {
		return tooDeep(r.pos)
	}
	h, err := r.u8()
	if err != nil {
		return err
	}
	n, et := int(h>>4), h&0x0f
	if n == 15 {
		if n, err = r.length(); err != nil {
			return err
		}
	}
	if n == 0 {
		return nil
	}
	m := compactMinOf(et)
	if m == 0 {
		return badType(et, r.pos)
	}
	return r.skipElems(n, m, compactFixed[et], func() error { return r.skipCompact(et, depth) })
}

func (r *reader) skipCompactMap(depth int) error {
	if depth > maxDepth {
		return tooDeep(r.pos)
	}
	n, err := r.length()
	if err != nil || n == 0 {
		return err
	}
	kv, err := r.u8()
	if err != nil {
		return err
	}
	kt, vt := kv>>4, kv&0x0f
	km, vm := compactMinOf(kt), compactMinOf(vt)
	if km == 0 || vm == 0 {
		return badType(kv, r.pos)
	}
	if err := r.count(int64(n), km+vm); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := r.skipCompact(kt, depth); err != nil {
			if err == errShort {
				r.need += vm + (n-i-1)*(km+vm)
			}
			return err
		}
		if err := r.skipCompact(vt, depth); err != nil {
			if err == errShort {
				r.need += (n - i - 1) * (km + vm)
			}
			return err
		}
	}
	return nil
}

// skipElems steps over the n elements of a list or set, each at least m
// bytes: fixed-size elements in one step, others one by one. When the input
// runs short, it adds the bytes the remaining elements need at least, so a
// long list arrives in a few reads rather than one per element.
func (r *reader) skipElems(n, m int, fixed bool, one func() error) error {
	if err := r.count(int64(n), m); err != nil {
		return err
	}
	if fixed {
		return r.skip(n * m)
	}
	for i := 0; i < n; i++ {
		if err := one(); err != nil {
			if err == errShort {
				r.need += (n - i - 1) * m
			}
			return err
		}
	}
	return nil
}
