package redis

import (
	"strings"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Encode appends msg: as it arrived, or, for a command with mutations, with
// AttrKey replacing the first key and AttrStripPrefix removing a prefix from
// every key. It has no side effects: the connection's handshake is
// Handshake's, and what a handler must know was written it learns from
// codec.Message.Written.
func (c *redisCodec) Encode(dst []byte, msg *codec.Message) ([]byte, error) {
	cm, ok := msg.Private.(*command)
	if !ok || len(msg.Mutations) == 0 || msg.Kind != codec.KindRequest && msg.Kind != codec.KindOneway ||
		cm.spec != nil && cm.spec.flags&flagChannel != 0 {
		return append(dst, msg.Raw...), nil
	}
	return appendMutated(dst, cm, msg.Mutations), nil
}

// Handshake implements codec.Handshaker: a connection to a server opens with
// AUTH (option upstream_password) and READONLY (read_policy
// prefer_replica), whose answers Decode swallows. The proxy calls it once
// per upstream connection, before the connection's reader starts. A codec
// facing a client has no handshake.
func (c *redisCodec) Handshake(dst []byte) []byte {
	if !c.toServer || c.opt.upHandshake == nil {
		return dst
	}
	c.pending.Add(int32(len(c.opt.handshakeNames)))
	return append(dst, c.opt.upHandshake...)
}

// appendMutated writes a command with its mutations applied, as an array of
// bulk strings whatever form it arrived in.
func appendMutated(dst []byte, cm *command, muts []codec.Attr) []byte {
	args := append([][]byte(nil), cm.args...)
	for _, mu := range muts {
		switch mu.Key {
		case AttrKey:
			if i := cm.firstKey(); i > 0 {
				args[i] = []byte(mu.Value)
			}
		case AttrStripPrefix:
			for _, i := range cm.keyIndexes(-1) {
				if k := string(args[i]); strings.HasPrefix(k, mu.Value) {
					args[i] = args[i][len(mu.Value):]
				}
			}
		}
	}
	return appendCommand(dst, args...)
}

// errorPrefix is the error code a local reply starts with. Clients match on
// it (go-redis retries TRYAGAIN, LOADING, ...), so it uses no code a client
// would misread and names the proxy's reason plainly.
var errorPrefix = map[codec.Status]string{
	codec.StatusNoRoute:       "ERR",
	codec.StatusNoUpstream:    "NOUPSTREAM",
	codec.StatusTimeout:       "TIMEOUT",
	codec.StatusOverloaded:    "OVERLOADED",
	codec.StatusRateLimited:   "RATELIMITED",
	codec.StatusUpstreamReset: "UPSTREAMRESET",
	codec.StatusBadRequest:    "ERR",
	codec.StatusUnauthorized:  "NOPERM",
	codec.StatusFault:         "FAULT",
	codec.StatusError:         "ERR",
}

// Reply builds a Redis error answer: "-<CODE> <detail>".
func (c *redisCodec) Reply(req *codec.Message, status codec.Status, detail string) (*codec.Message, error) {
	return errorAnswer(req, status, detail), nil
}

func errorAnswer(req *codec.Message, status codec.Status, detail string) *codec.Message {
	prefix, ok := errorPrefix[status]
	if !ok {
		prefix = "ERR"
	}
	if detail == "" {
		detail = "rosetta: " + status.String()
	}
	if status == codec.StatusOK {
		status = codec.StatusError
	}
	raw := appendError(nil, prefix+" "+detail)
	var id uint64
	if req != nil {
		id = req.ID
	}
	return &codec.Message{Kind: codec.KindResponse, ID: id, Status: status, Raw: raw, Attrs: codec.None}
}

// answer wraps a RESP value the proxy built as a response message.
func answer(raw []byte) *codec.Message {
	m := &codec.Message{Kind: codec.KindResponse, Raw: raw, Attrs: codec.None}
	if len(raw) > 0 && (raw[0] == typeError || raw[0] == typeBlobError) {
		m.Status = codec.StatusError
	}
	return m
}
