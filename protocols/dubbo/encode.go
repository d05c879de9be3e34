package dubbo

import (
	"encoding/binary"
	"strconv"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Encode implements codec.Codec. Without mutations it copies Raw and writes
// the current ID into the copy. With mutations it rewrites the attachments
// map, the last value of the body, copying every other byte as it was: the
// arguments are never decoded, so their classes need not be known.
//
// Mutations of a request: every key is written into the attachments, except
// method; interface, version and method also replace the body's service path,
// service version and method name, and interface also replaces an existing
// path attachment (a Dubbo provider looks the service up by it). Mutations of
// a response need a response that already carries attachments (flag 3-5).
func (c *Codec) Encode(dst []byte, m *codec.Message) ([]byte, error) {
	if len(m.Raw) < headerLen {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "message has no frame to encode (%d bytes)", len(m.Raw))
	}
	if len(m.Mutations) == 0 {
		start := len(dst)
		dst = append(dst, m.Raw...)
		binary.BigEndian.PutUint64(dst[start+4:], m.ID)
		return dst, nil
	}
	a, err := c.attrsOf(m)
	if err != nil {
		return nil, err
	}
	return c.encodeMutated(dst, m, a)
}

// attrsOf returns the parsed attributes of m's frame, decoding Raw again when
// m did not come from this codec's Decode.
func (c *Codec) attrsOf(m *codec.Message) (*attrs, error) {
	if f, ok := m.Private.(*frame); ok && sameSlice(f.msg.Raw, m.Raw) {
		return &f.attrs, nil
	}
	d, err := c.Decode(m.Raw)
	if err != nil {
		return nil, err
	}
	return &d.Private.(*frame).attrs, nil
}

func sameSlice(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func (c *Codec) encodeMutated(dst []byte, m *codec.Message, a *attrs) ([]byte, error) {
	if !a.hasAtts {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "cannot write attributes into a %s %s", a.describe(), m.Kind)
	}
	if err := a.parse(); err != nil {
		return nil, err
	}
	muts := lastValues(m.Mutations)
	var w stringWriter
	defer w.release()
	start := len(dst)
	dst = append(dst, m.Raw[:headerLen]...)
	binary.BigEndian.PutUint64(dst[start+4:], m.ID)
	body := a.body
	var err error
	if a.request {
		dst = append(dst, body[:a.pathOff]...)
		fields := []struct {
			key       string
			from, end int
		}{{AttrInterface, a.pathOff, a.versionOff}, {keyVersion, a.versionOff, a.methodOff}, {AttrMethod, a.methodOff, a.argsOff}}
		for _, f := range fields {
			if dst, err = w.replaceString(dst, body[f.from:f.end], muts, f.key); err != nil {
				return nil, err
			}
		}
		dst = append(dst, body[a.argsOff:a.mapOff]...)
	} else {
		dst = append(dst, body[:a.mapOff]...)
	}
	if dst, err = a.appendMap(dst, muts, &w); err != nil {
		return nil, err
	}
	dst = append(dst, body[a.mapEnd:]...)
	n := len(dst) - start
	if n > c.maxFrame {
		return nil, codec.Errorf(Name, codec.ErrTooLarge, "mutated frame of %d bytes is over the limit of %d", n, c.maxFrame)
	}
	binary.BigEndian.PutUint32(dst[start+12:], uint32(n-headerLen))
	return dst, nil
}

// describe names what kind of frame carries no attachments, for errors.
func (a *attrs) describe() string {
	switch {
	case a.flags&flagEvent != 0:
		return "event"
	case a.flags&serialMask != serialHessian2:
		return "non-hessian2 (serialization " + strconv.Itoa(int(a.flags&serialMask)) + ")"
	case a.flags&flagRequest == 0:
		return "attachment-less (body flag " + strconv.Itoa(int(a.respFlag)) + ")"
	}
	return "dubbo"
}

// appendMap writes the attachments map with muts applied: existing entries
// keep their place and bytes, replaced values are rewritten, new keys go last.
func (a *attrs) appendMap(dst []byte, muts []codec.Attr, w *stringWriter) ([]byte, error) {
	body := a.body
	dst = append(dst, body[a.mapOff:a.mapBody]...)
	applied := make([]bool, len(muts))
	var err error
	for i := range a.entries {
		e := &a.entries[i]
		j := -1
		if e.stringKey {
			j = indexOf(muts, e.key)
			if j >= 0 {
				applied[j] = true
			} else if a.request && e.key == keyPath {
				j = indexOf(muts, AttrInterface)
			}
		}
		if j < 0 {
			dst = append(dst, body[e.keyOff:e.end]...)
			continue
		}
		// Replacing a map, list or object would renumber Hessian references
		// made after it, so only plain values are replaced.
		if !isScalar(body[e.valOff]) {
			return nil, codec.Errorf(Name, codec.ErrUnsupported,
				"attachment %q holds an object, list or map; replacing it is not supported", e.key)
		}
		dst = append(dst, body[e.keyOff:e.valOff]...)
		if dst, err = w.append(dst, muts[j].Value); err != nil {
			return nil, err
		}
	}
	for j, mu := range muts {
		if applied[j] || a.request && mu.Key == AttrMethod {
			continue
		}
		if dst, err = w.append(dst, mu.Key); err != nil {
			return nil, err
		}
		if dst, err = w.append(dst, mu.Value); err != nil {
			return nil, err
		}
	}
	return append(dst, 'Z'), nil
}

// replaceString writes the body string field named key: the mutated value if
// there is one, else the field's original bytes.
func (w *stringWriter) replaceString(dst, orig []byte, muts []codec.Attr, key string) ([]byte, error) {
	if j := indexOf(muts, key); j >= 0 {
		return w.append(dst, muts[j].Value)
	}
	return append(dst, orig...), nil
}

// lastValues keeps the last value set for each key, in first-set order.
func lastValues(muts []codec.Attr) []codec.Attr {
	out := make([]codec.Attr, 0, len(muts))
	for _, mu := range muts {
		if j := indexOf(out, mu.Key); j >= 0 {
			out[j].Value = mu.Value
			continue
		}
		out = append(out, mu)
	}
	return out
}

func indexOf(attrs []codec.Attr, key string) int {
	for i := range attrs {
		if attrs[i].Key == key {
			return i
		}
	}
	return -1
}
