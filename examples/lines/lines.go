// Package lines is the smallest codec of an in-order protocol, the second
// example in docs/writing-a-codec.md: a request is one line of words, its
// answer is one line, and answers come back in the order the requests
// went out, with no ID to pair them by (as in Redis).
//
// Wire format, every frame one line ended by '\n':
//
//	request: <command> [<key> [<arg> ...]]\n   words separated by one space
//	answer:  OK [<text>]\n | ERR [<text>]\n
//
// The command and the key are the routable attributes. An answer cannot be
// told from a request by its bytes ("OK" is a command like any other), so
// the codec reads requests on a caller's connection and answers on a
// server's (codec.Peer).
package lines

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Name is the protocol's registered name.
const Name = "lines-example"

// The routable attributes of a request.
const (
	AttrCommand = "command" // the first word
	AttrKey     = "key"     // the second word, when there is one
)

// MaxLine is the longest line, '\n' included, unless the max_frame_bytes
// option sets another limit, from MinLine (room for any local reply's
// status) to MaxLineLimit.
const (
	MaxLine      = 64 << 10
	MinLine      = 64
	MaxLineLimit = 1 << 20
)

func init() {
	codec.Register(codec.Protocol{Name: Name, Ordering: codec.InOrder, New: New, MetricAttribute: AttrCommand})
}

// Codec reads one connection's lines: requests when its peer is a caller,
// answers when it is a server.
type Codec struct {
	peer codec.Peer
	max  int
}

// New makes a codec. Its one option is max_frame_bytes, the longest line.
func New(opts codec.Options, peer codec.Peer) (codec.Codec, error) {
	c := &Codec{peer: peer, max: MaxLine}
	for k, v := range opts {
		if k != "max_frame_bytes" {
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "unknown option %q", k)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < MinLine || n > MaxLineLimit {
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "option max_frame_bytes=%q: want an integer from %d to %d", v, MinLine, MaxLineLimit)
		}
		c.max = n
	}
	return c, nil
}

// Split implements codec.Codec: a frame ends at the first '\n', which must
// come within the limit.
func (c *Codec) Split(buf []byte) (codec.Split, error) {
	if i := bytes.IndexByte(buf[:min(len(buf), c.max)], '\n'); i >= 0 {
		return codec.Split{Len: i + 1}, nil
	}
	if len(buf) >= c.max {
		return codec.Split{}, codec.Errorf(Name, codec.ErrTooLarge, "no end of line in %d bytes", c.max)
	}
	return codec.Split{Need: 1}, nil
}

// Decode implements codec.Codec. A request with an empty word is returned
// with the error, so the proxy answers it with ERR before closing.
func (c *Codec) Decode(frame []byte) (*codec.Message, error) {
	if len(frame) > c.max {
		return nil, codec.Errorf(Name, codec.ErrTooLarge, "line of %d bytes", len(frame))
	}
	if len(frame) == 0 || bytes.IndexByte(frame, '\n') != len(frame)-1 {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "not one line")
	}
	line := string(frame[:len(frame)-1])
	if c.peer == codec.PeerServer {
		return decodeAnswer(frame, line)
	}
	m := &codec.Message{Kind: codec.KindRequest, Raw: frame, Attrs: codec.None}
	words := strings.Split(line, " ")
	for _, w := range words {
		if w == "" {
			return m, codec.Errorf(Name, codec.ErrMalformed, "empty word in %q", line)
		}
	}
	attrs := codec.Map{AttrCommand: words[0]}
	if len(words) > 1 {
		attrs[AttrKey] = words[1]
	}
	m.Attrs = attrs
	return m, nil
}

func decodeAnswer(frame []byte, line string) (*codec.Message, error) {
	m := &codec.Message{Kind: codec.KindResponse, Raw: frame, Attrs: codec.None}
	switch word, _, _ := strings.Cut(line, " "); word {
	case "OK":
	case "ERR":
		m.Status = codec.StatusError
	default:
		return nil, codec.Errorf(Name, codec.ErrMalformed, "answer %.20q is neither OK nor ERR", line)
	}
	return m, nil
}

// Encode implements codec.Codec. There is no ID to write; a mutation
// replaces the command or the key (adding one) of a request.
func (c *Codec) Encode(dst []byte, m *codec.Message) ([]byte, error) {
	if len(m.Mutations) == 0 {
		return append(dst, m.Raw...), nil
	}
	if m.Kind != codec.KindRequest {
		return dst, codec.Errorf(Name, codec.ErrUnsupported, "an answer has no attributes to set")
	}
	words := strings.Split(strings.TrimSuffix(string(m.Raw), "\n"), " ")
	for _, mu := range m.Mutations {
		if mu.Value == "" || strings.ContainsAny(mu.Value, " \n") {
			return dst, codec.Errorf(Name, codec.ErrUnsupported, "%s=%q is not one word", mu.Key, mu.Value)
		}
		switch {
		case mu.Key == AttrCommand:
			words[0] = mu.Value
		case mu.Key == AttrKey && len(words) == 1:
			words = append(words, mu.Value)
		case mu.Key == AttrKey:
			words[1] = mu.Value
		default:
			return dst, codec.Errorf(Name, codec.ErrUnsupported, "no attribute %q to set", mu.Key)
		}
	}
	line := strings.Join(words, " ") + "\n"
	if len(line) > c.max {
		return dst, codec.Errorf(Name, codec.ErrTooLarge, "line of %d bytes", len(line))
	}
	return append(dst, line...), nil
}

// Reply implements codec.Codec: "ERR <status>: <detail>", on one line
// within the limit.
func (c *Codec) Reply(req *codec.Message, st codec.Status, detail string) (*codec.Message, error) {
	line := "ERR " + st.String() + ": " + strings.ReplaceAll(detail, "\n", " ")
	line = line[:min(len(line), c.max-1)] + "\n"
	return &codec.Message{Kind: codec.KindResponse, Status: st, Raw: []byte(line), Attrs: codec.None}, nil
}

var _ codec.Codec = (*Codec)(nil)
