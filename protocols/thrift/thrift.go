// Package thrift is the Rosetta codec for Apache Thrift: the binary protocol
// (strict and the old non-strict form) and the compact protocol, over framed,
// unframed (buffered) and THeader transports. See README.md for the wire
// formats, how a connection's transport is detected, the attributes it
// exposes and how proxy errors map to TApplicationException types.
package thrift

import (
	"strconv"
	"strings"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Name is the registered protocol name.
const Name = "thrift"

func init() {
	codec.Register(codec.Protocol{Name: Name, Ordering: codec.ByID, New: New, MetricAttribute: "method"})
}

// Message types (TMessageType).
const (
	msgCall      = 1
	msgReply     = 2
	msgException = 3
	msgOneway    = 4
)

// Binary protocol message header.
//
//	strict:     0x80 0x01 0x00 <type>  <name len i32> <name>  <seqid i32>
//	non-strict: <name len i32> <name>  <type byte>  <seqid i32>
const (
	binaryVersionMask = 0xffff0000
	binaryVersion1    = 0x80010000
)

// Compact protocol message header:
//
//	0x82  <type<<5 | version 1>  <seqid varint>  <name len varint> <name>
const (
	compactID          = 0x82
	compactVersion     = 1
	compactVersionMask = 0x1f
	compactTypeShift   = 5
)

// THeader (doc/specs/HeaderFormat.md in apache/thrift):
//
//	<frame len u32> 0x0f 0xff <flags u16> <seqid u32> <header words u16>
//	<header: protocol id varint, transform count varint, transform ids,
//	         info sections, zero padding to a multiple of 4>  <payload>
const (
	headerMagic0   = 0x0f
	headerMagic1   = 0xff
	headerMetaLen  = 10     // magic, flags, seqid, header words
	headerStart    = 4 + 10 // the header block starts after the frame length and meta
	maxHeaderBytes = 0xffff * 4
	headerBinary   = 0 // THeader protocol ids
	headerCompact  = 2
	infoKeyValue   = 1 // the info section of key/value headers
)

// Defaults and limits.
const (
	// DefaultMaxFrame is Thrift's own default frame limit (TConfiguration's
	// DEFAULT_MAX_FRAME_SIZE): the largest value a frame length may carry,
	// and the largest unframed message.
	DefaultMaxFrame = 16384000
	// maxDepth is how deeply structs and containers may nest in an unframed
	// message, Thrift's DEFAULT_RECURSION_DEPTH.
	maxDepth = 64
	// minMaxFrame keeps max_frame_bytes large enough for a small message.
	minMaxFrame = 64
)

// transport is a connection's framing.
type transport uint8

const (
	transportAuto transport = iota
	transportFramed
	transportUnframed
	transportHeader
)

var transportNames = [...]string{"auto", "framed", "unframed", "header"}

func (t transport) String() string { return transportNames[t] }

// protocol is a message's encoding.
type protocol uint8

const (
	protocolAuto protocol = iota
	protocolBinary
	protocolCompact
)

var protocolNames = [...]string{"auto", "binary", "compact"}

func (p protocol) String() string { return protocolNames[p] }

// class is what a connection's first frame showed: whether frames carry a
// length prefix (framed and THeader, told apart per frame by the THeader
// magic) or not (unframed, found only by skipping the message).
type class uint8

const (
	classUnknown class = iota
	classLengthPrefixed
	classUnframed
)

// Codec is the Thrift codec for one connection. The connection's framing is
// learnt from its first frame (or fixed by options) and kept: Split and
// Decode, which run on the reader goroutine only, are the only ones to touch
// it. Encode and Reply read what they need from the message (Private).
type Codec struct {
	maxFrame  int
	transport transport // fixed by options, or auto
	protocol  protocol  // fixed by options, or auto
	class     class
	// oneway names methods whose CALL messages expect no reply: Apache
	// Thrift's Go client sends oneway calls as CALL, not ONEWAY.
	oneway map[string]bool
}

// New makes a Codec from options:
//
//	transport        auto (default) | framed | unframed | header
//	protocol         auto (default) | binary | compact
//	max_frame_bytes  the largest frame length (and unframed message), default 16384000
//	oneway_methods   comma-separated methods ("fire" or "Service:fire") whose
//	                 CALL messages are oneway
func New(opts codec.Options, _ codec.Peer) (codec.Codec, error) {
	c := &Codec{maxFrame: DefaultMaxFrame}
	for k, v := range opts {
		switch k {
		case "transport":
			t, ok := parseEnum(transportNames[:], v)
			if !ok {
				return nil, codec.Errorf(Name, codec.ErrUnsupported, "option transport=%q: want one of auto, framed, unframed, header", v)
			}
			c.transport = transport(t)
		case "protocol":
			p, ok := parseEnum(protocolNames[:], v)
			if !ok {
				return nil, codec.Errorf(Name, codec.ErrUnsupported, "option protocol=%q: want one of auto, binary, compact", v)
			}
			c.protocol = protocol(p)
		case "max_frame_bytes":
			n, err := strconv.Atoi(v)
			if err != nil || n < minMaxFrame || n > 1<<30 {
				return nil, codec.Errorf(Name, codec.ErrUnsupported,
					"option max_frame_bytes=%q: want an integer from %d to %d", v, minMaxFrame, 1<<30)
			}
			c.maxFrame = n
		case "oneway_methods":
			c.oneway = map[string]bool{}
			for _, m := range strings.Split(v, ",") {
				if m = strings.TrimSpace(m); m != "" {
					c.oneway[m] = true
				}
			}
		default:
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "unknown option %q", k)
		}
	}
	switch c.transport {
	case transportFramed, transportHeader:
		c.class = classLengthPrefixed
	case transportUnframed:
		c.class = classUnframed
	}
	return c, nil
}

func parseEnum(names []string, v string) (int, bool) {
	for i, n := range names {
		if n == v {
			return i, true
		}
	}
	return 0, false
}

// Split implements codec.Codec. A length-prefixed frame ends where its length
// says; an unframed message ends where its struct does, so Split steps over
// it (see skip.go), asking for at least the bytes the rest must still have.
func (c *Codec) Split(buf []byte) (codec.Split, error) {
	if c.class == classUnknown {
		cl, need, err := c.detect(buf)
		if err != nil || need > 0 {
			return codec.Split{Need: need}, err
		}
		c.class = cl
	}
	if c.class == classUnframed {
		r := reader{b: buf, limit: c.maxFrame}
		if _, err := c.readUnframed(&r); err != nil {
			if err != errShort {
				return codec.Split{}, err
			}
			// need is a lower bound of what the message still lacks.
			if len(buf)+r.need > c.maxFrame {
				return codec.Split{}, codec.Errorf(Name, codec.ErrTooLarge,
					"message of at least %d bytes is over the limit of %d", len(buf)+r.need, c.maxFrame)
			}
			return codec.Split{Need: r.need}, nil
		}
		return codec.Split{Len: r.pos}, nil
	}
	if len(buf) < 4 {
		return codec.Split{Need: 4 - len(buf)}, nil
	}
	n := be32(buf)
	if n > uint32(c.maxFrame) {
		return codec.Split{}, codec.Errorf(Name, codec.ErrTooLarge, "frame of %d bytes is over the limit of %d", n, c.maxFrame)
	}
	total := 4 + int(n)
	if len(buf) < total {
		return codec.Split{Need: total - len(buf)}, nil
	}
	return codec.Split{Len: total}, nil
}

// Sniff implements codec.Sniffer. It is sure about strict binary and compact
// messages, framed or not, and THeader frames. The old non-strict binary
// protocol starts with a bare name length and cannot be told from other
// protocols: a listener that expects it names the codec in config instead.
func (c *Codec) Sniff(prefix []byte) (match bool, sure bool) {
	if len(prefix) < 2 {
		return false, false
	}
	if isStrict(prefix) || isCompact(prefix) {
		return true, true
	}
	if len(prefix) < 6 {
		return false, false
	}
	p := prefix[4:]
	return isStrict(p) || isCompact(p) || p[0] == headerMagic0 && p[1] == headerMagic1, true
}

// isStrict reports whether b starts a strict binary message (0x80 0x01).
func isStrict(b []byte) bool { return len(b) >= 2 && b[0] == 0x80 && b[1] == 0x01 }

// isCompact reports whether b starts a compact message (0x82, version 1).
func isCompact(b []byte) bool {
	return len(b) >= 2 && b[0] == compactID && b[1]&compactVersionMask == compactVersion
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

// Interface guards.
var (
	_ codec.Codec      = (*Codec)(nil)
	_ codec.Sniffer    = (*Codec)(nil)
	_ codec.Attributes = (*attrs)(nil)
)

// poolKeys names every transport and encoding pair, so PoolKey allocates
// nothing.
var poolKeys = func() (k [4][4]string) {
	for t := range k {
		for e := range k[t] {
			k[t][e] = transportNames[t] + "/" + encodingNames[e]
		}
	}
	return k
}()

// PoolKey implements codec.PoolKeyer: a Thrift server reads one transport and
// one encoding per connection, so each pair gets its own upstream connections.
func (c *Codec) PoolKey(m *codec.Message) string {
	fi, ok := m.Private.(*frameInfo)
	if !ok || int(fi.transport) >= len(poolKeys) || int(fi.enc) >= len(poolKeys[0]) {
		return ""
	}
	return poolKeys[fi.transport][fi.enc]
}

var _ codec.PoolKeyer = (*Codec)(nil)
