// Package dubbo is the Rosetta codec for Dubbo 2 (the "dubbo" protocol of
// Apache Dubbo) with hessian2 bodies. See README.md for the wire format, the
// attributes it exposes and how proxy errors map to Dubbo status bytes.
package dubbo

import (
	"encoding/binary"
	"strconv"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Name is the registered protocol name.
const Name = "dubbo"

func init() {
	codec.Register(codec.Protocol{Name: Name, Ordering: codec.ByID, New: New, MetricAttribute: AttrMethod})
}

// Header layout (16 bytes):
//
//	0-1   magic 0xdabb
//	2     flags: 0x80 request, 0x40 two-way, 0x20 event, low 5 bits serialization
//	3     status (responses only)
//	4-11  request id, big endian
//	12-15 body length, big endian
const (
	headerLen = 16
	magicHigh = 0xda
	magicLow  = 0xbb

	flagRequest = 0x80
	flagTwoWay  = 0x40
	flagEvent   = 0x20
	serialMask  = 0x1f

	// serialHessian2 is the only serialization whose body this codec reads.
	serialHessian2 = 2
)

// Response status bytes (org.apache.dubbo.remoting.exchange.Response).
const (
	statusOK                = 20
	statusClientTimeout     = 30
	statusServerTimeout     = 31
	statusBadRequest        = 40
	statusBadResponse       = 50
	statusServiceNotFound   = 60
	statusServiceError      = 70
	statusServerError       = 80
	statusClientError       = 90
	statusThreadpoolExhaust = 100
)

// Response body flags: the first value of an OK response body.
const (
	respException         = 0
	respValue             = 1
	respNull              = 2
	respExceptionWithAtts = 3
	respValueWithAtts     = 4
	respNullWithAtts      = 5
)

// minMaxFrame keeps max_frame_bytes large enough for a header and a small body.
const minMaxFrame = 64

// Codec is the Dubbo codec for one connection. It keeps no state between
// frames, so one value could serve several connections.
type Codec struct {
	maxFrame int
}

// New makes a Codec from options. The only option is max_frame_bytes, the
// largest whole frame (header included) accepted in either direction.
func New(opts codec.Options, _ codec.Peer) (codec.Codec, error) {
	c := &Codec{maxFrame: codec.DefaultMaxFrame}
	for k, v := range opts {
		switch k {
		case "max_frame_bytes":
			n, err := strconv.Atoi(v)
			if err != nil || n < minMaxFrame || n > 1<<31-1 {
				return nil, codec.Errorf(Name, codec.ErrUnsupported,
					"option max_frame_bytes=%q: want an integer from %d to %d", v, minMaxFrame, 1<<31-1)
			}
			c.maxFrame = n
		default:
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "unknown option %q", k)
		}
	}
	return c, nil
}

// Split implements codec.Codec.
func (c *Codec) Split(buf []byte) (codec.Split, error) {
	if len(buf) > 0 && buf[0] != magicHigh || len(buf) > 1 && buf[1] != magicLow {
		return codec.Split{}, codec.Errorf(Name, codec.ErrMalformed, "bad magic % x", buf[:min(2, len(buf))])
	}
	if len(buf) < headerLen {
		return codec.Split{Need: headerLen - len(buf)}, nil
	}
	total := headerLen + uint64(binary.BigEndian.Uint32(buf[12:]))
	if total > uint64(c.maxFrame) {
		return codec.Split{}, codec.Errorf(Name, codec.ErrTooLarge,
			"frame of %d bytes is over the limit of %d", total, c.maxFrame)
	}
	if uint64(len(buf)) < total {
		return codec.Split{Need: int(total) - len(buf)}, nil
	}
	return codec.Split{Len: int(total)}, nil
}

// Sniff implements codec.Sniffer: a Dubbo connection starts with 0xdabb.
func (c *Codec) Sniff(prefix []byte) (match bool, sure bool) {
	switch {
	case len(prefix) == 0:
		return false, false
	case prefix[0] != magicHigh:
		return false, true
	case len(prefix) == 1:
		return false, false
	}
	return prefix[1] == magicLow, true
}

// Interface guards.
var (
	_ codec.Codec            = (*Codec)(nil)
	_ codec.HeartbeatReplier = (*Codec)(nil)
	_ codec.Sniffer          = (*Codec)(nil)
	_ codec.GoAwayer         = (*Codec)(nil)
	_ codec.Attributes       = (*attrs)(nil)
)
