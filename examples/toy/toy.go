// Package toy is the smallest complete Rosetta codec: a length-prefixed
// request/response protocol, written as the example in docs/writing-a-codec.md.
//
// Wire format (big endian):
//
//	+--------+------+--------+--------+---------+--------------------+------+
//	| length | kind |   id   | status | nheader | headers            | body |
//	|   4    |  1   |   8    |   1    |    1    | (1+k+1+v) each     | rest |
//	+--------+------+--------+--------+---------+--------------------+------+
//
// length counts every byte after itself. kind: 1 request, 2 response,
// 3 oneway. status: 0 ok, anything else an error whose text is the body.
// Each header is a one-byte key length, the key, a one-byte value length, the
// value. The headers are the routable attributes.
package toy

import (
	"encoding/binary"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Name is the protocol's registered name.
const Name = "toy"

// Wire kinds.
const (
	KindRequest  = 1
	KindResponse = 2
	KindOneway   = 3
)

const headLen = 4 + 1 + 8 + 1 + 1

// MaxFrame is the toy protocol's frame limit.
const MaxFrame = 1 << 20

func init() {
	codec.Register(codec.Protocol{Name: Name, Ordering: codec.ByID, New: New, MetricAttribute: "method"})
}

// Codec is the toy protocol's codec; it has no per-connection state.
type Codec struct{}

// New makes a codec; the toy protocol takes no options.
func New(opts codec.Options, _ codec.Peer) (codec.Codec, error) {
	for k := range opts {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "unknown option %q", k)
	}
	return Codec{}, nil
}

// Split implements codec.Codec.
func (Codec) Split(buf []byte) (codec.Split, error) {
	if len(buf) < 4 {
		return codec.Split{Need: 4 - len(buf)}, nil
	}
	n := int(binary.BigEndian.Uint32(buf))
	if n > MaxFrame {
		return codec.Split{}, codec.Errorf(Name, codec.ErrTooLarge, "frame of %d bytes", n)
	}
	if n < headLen-4 {
		return codec.Split{}, codec.Errorf(Name, codec.ErrMalformed, "frame of %d bytes is shorter than a head", n)
	}
	if len(buf) < 4+n {
		return codec.Split{Need: 4 + n - len(buf)}, nil
	}
	return codec.Split{Len: 4 + n}, nil
}

var kinds = map[byte]codec.Kind{KindRequest: codec.KindRequest, KindResponse: codec.KindResponse, KindOneway: codec.KindOneway}

// Decode implements codec.Codec.
func (c Codec) Decode(frame []byte) (*codec.Message, error) {
	sp, err := c.Split(frame)
	if err != nil {
		return nil, err
	}
	if sp.Len == 0 || sp.Len != len(frame) {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "frame length %d, have %d bytes", sp.Len, len(frame))
	}
	kind, ok := kinds[frame[4]]
	if !ok {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "unknown kind %d", frame[4])
	}
	m := &codec.Message{Kind: kind, ID: binary.BigEndian.Uint64(frame[5:]), Raw: frame, Attrs: codec.None}
	attrs, _, err := readHeaders(frame[headLen:], int(frame[headLen-1]))
	if err != nil {
		return m, err // kind and id are known: the proxy can answer with an error
	}
	m.Attrs = attrs
	if frame[13] != 0 {
		m.Status = codec.StatusError
	}
	return m, nil
}

func readHeaders(b []byte, n int) (codec.Map, int, error) {
	attrs := codec.Map{}
	off := 0
	for i := 0; i < n; i++ {
		k, next, err := readString(b, off)
		if err != nil {
			return nil, 0, err
		}
		v, next, err := readString(b, next)
		if err != nil {
			return nil, 0, err
		}
		attrs[k], off = v, next
	}
	return attrs, off, nil
}

func readString(b []byte, off int) (string, int, error) {
	if off >= len(b) || off+1+int(b[off]) > len(b) {
		return "", 0, codec.Errorf(Name, codec.ErrMalformed, "header runs past the frame")
	}
	n := int(b[off])
	return string(b[off+1 : off+1+n]), off + 1 + n, nil
}

// Encode implements codec.Codec: the fast path patches the id in a copy of the
// frame; mutations rebuild the headers.
func (Codec) Encode(dst []byte, m *codec.Message) ([]byte, error) {
	if len(m.Mutations) == 0 {
		start := len(dst)
		dst = append(dst, m.Raw...)
		binary.BigEndian.PutUint64(dst[start+5:], m.ID)
		return dst, nil
	}
	attrs, off, err := readHeaders(m.Raw[headLen:], int(m.Raw[headLen-1]))
	if err != nil {
		return nil, err
	}
	for _, mu := range m.Mutations {
		attrs[mu.Key] = mu.Value
	}
	body := m.Raw[headLen+off:]
	return AppendFrame(dst, m.Raw[4], m.ID, m.Raw[13], attrs, body)
}

// AppendFrame appends a whole frame.
func AppendFrame(dst []byte, kind byte, id uint64, status byte, headers map[string]string, body []byte) ([]byte, error) {
	if len(headers) > 255 {
		return nil, codec.Errorf(Name, codec.ErrTooLarge, "%d headers", len(headers))
	}
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, kind)
	dst = binary.BigEndian.AppendUint64(dst, id)
	dst = append(dst, status, byte(len(headers)))
	for k, v := range headers {
		if len(k) > 255 || len(v) > 255 {
			return nil, codec.Errorf(Name, codec.ErrTooLarge, "header %q is longer than 255 bytes", k)
		}
		dst = append(append(dst, byte(len(k))), k...)
		dst = append(append(dst, byte(len(v))), v...)
	}
	dst = append(dst, body...)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst, nil
}

// Reply implements codec.Codec: an error response whose body is the detail.
func (c Codec) Reply(req *codec.Message, st codec.Status, detail string) (*codec.Message, error) {
	if req.Kind == codec.KindOneway {
		return nil, nil
	}
	frame, err := AppendFrame(nil, KindResponse, req.ID, byte(st)+1, nil, []byte(detail))
	if err != nil {
		return nil, err
	}
	return c.Decode(frame)
}

var _ codec.Codec = Codec{}
