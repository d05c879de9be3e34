// Package trpc is Rosetta's codec for the tRPC protocol (trpc.group).
//
// Every tRPC frame starts with a 16-byte head that gives the frame's total
// length, so finding frame boundaries never looks past the head. Unary frames
// then carry a protobuf RequestProtocol or ResponseProtocol header, which this
// codec walks with protowire (no reflection) to find the request id, the call
// type, the return codes and the routable fields; stream frames carry a
// protobuf stream meta (INIT, CLOSE, FEEDBACK) or raw data (DATA). See
// README.md for the wire layout and the choices this codec makes.
package trpc

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Name is the protocol's registered name.
const Name = "trpc"

func init() {
	codec.Register(codec.Protocol{Name: Name, Ordering: codec.ByID, New: New, MetricAttribute: "func"})
}

// The 16-byte frame head, big endian:
//
//	0      2      3       4         8          10         14        15
//	+------+------+-------+---------+----------+----------+---------+----------+
//	| 0930 | data | strm  | total   | header   | stream   | proto   | reserved |
//	| magic| type | type  | length  | length   | id       | version |          |
//	+------+------+-------+---------+----------+----------+---------+----------+
const (
	headLen = 16
	magic   = 0x0930 // TRPC_MAGIC_VALUE

	offDataType   = 2  // 0 unary, 1 stream
	offStreamType = 3  // 0 unary, 1 INIT, 2 DATA, 3 FEEDBACK, 4 CLOSE
	offTotalLen   = 4  // uint32, head included
	offHeaderLen  = 8  // uint16, the protobuf header after the head (0 on stream frames)
	offStreamID   = 10 // uint32, the stream id; trpc-go writes the request id here on unary frames
	offVersion    = 14 // 1 since trpc-go's frame head v1, 0 before
)

// Data frame types and stream frame types (trpc.proto's TrpcDataFrameType and
// TrpcStreamFrameType).
const (
	unaryFrame  = 0
	streamFrame = 1

	streamInit     = 1
	streamData     = 2
	streamFeedback = 3
	streamClose    = 4
)

// maxTransInfo caps the trans_info entries of one frame: routing cost grows
// with their number, and real callers send a handful.
const maxTransInfo = 1024

// OptMaxFrameBytes is the option that sets the largest frame, head included,
// the codec accepts. trpc-go's own limit is 10 MiB; the default here is
// codec.DefaultMaxFrame.
const OptMaxFrameBytes = "max_frame_bytes"

// trpcCodec is the per-connection codec. It keeps no state between frames.
type trpcCodec struct {
	maxFrame int
}

// New makes a codec from options; it refuses unknown options by name.
func New(opts codec.Options, _ codec.Peer) (codec.Codec, error) {
	c := &trpcCodec{maxFrame: codec.DefaultMaxFrame}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same unknown option every time
	for _, k := range keys {
		v := opts[k]
		switch k {
		case OptMaxFrameBytes:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < headLen || n > math.MaxUint32 {
				return nil, fmt.Errorf("codec/%s: option %s=%q: want an integer from %d to %d", Name, k, v, headLen, uint32(math.MaxUint32))
			}
			c.maxFrame = int(n)
		default:
			return nil, fmt.Errorf("codec/%s: unknown option %q (known: %s)", Name, k, OptMaxFrameBytes)
		}
	}
	return c, nil
}

// Split finds the first frame in buf from the head's total length.
func (c *trpcCodec) Split(buf []byte) (codec.Split, error) {
	if len(buf) >= 1 && buf[0] != magic>>8 || len(buf) >= 2 && binary.BigEndian.Uint16(buf) != magic {
		return codec.Split{}, codec.Errorf(Name, codec.ErrMalformed, "bad magic %x", buf[:min(2, len(buf))])
	}
	if len(buf) < headLen {
		return codec.Split{Need: headLen - len(buf)}, nil
	}
	total, err := c.totalLen(buf)
	if err != nil {
		return codec.Split{}, err
	}
	if len(buf) < total {
		return codec.Split{Need: total - len(buf)}, nil
	}
	return codec.Split{Len: total}, nil
}

// totalLen reads and checks the head's total length.
func (c *trpcCodec) totalLen(head []byte) (int, error) {
	total := binary.BigEndian.Uint32(head[offTotalLen:])
	if total < headLen {
		return 0, codec.Errorf(Name, codec.ErrMalformed, "total length %d is shorter than the %d-byte head", total, headLen)
	}
	if uint64(total) > uint64(c.maxFrame) {
		return 0, codec.Errorf(Name, codec.ErrTooLarge, "total length %d exceeds %s %d", total, OptMaxFrameBytes, c.maxFrame)
	}
	return int(total), nil
}

// Sniff tells a tRPC connection by its magic and frame types.
func (c *trpcCodec) Sniff(prefix []byte) (match bool, sure bool) {
	if len(prefix) >= 1 && prefix[0] != magic>>8 || len(prefix) >= 2 && binary.BigEndian.Uint16(prefix) != magic {
		return false, true
	}
	if len(prefix) < 4 {
		return false, false
	}
	ok := prefix[offDataType] == unaryFrame && prefix[offStreamType] == 0 ||
		prefix[offDataType] == streamFrame && prefix[offStreamType] >= streamInit && prefix[offStreamType] <= streamClose
	return ok, true
}

// Interface guards.
var (
	_ codec.Codec   = (*trpcCodec)(nil)
	_ codec.Sniffer = (*trpcCodec)(nil)
)
