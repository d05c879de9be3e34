package redis

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// This file implements codec.Caller, for rosettactl call and serve.
//
// A request is a command: each argument is one word, as redis-cli takes
// them (--arg SET --arg key --arg value); the attribute command, when
// given, is the first word. An answer is shown as JSON: simple and bulk
// strings as strings, integers as numbers, nulls as null, arrays, sets and
// pushes as lists, maps as objects; an error answer has the error status and
// its text. Respond writes a JSON value as RESP2: a string as a bulk string,
// an integer as an integer, a boolean as 1 or 0, null as a null bulk string,
// a list as an array (an object as a flat array of keys and values); no
// reply is +OK.

// maxReplyDepth caps the nesting of a reply written from JSON.
const maxReplyDepth = 32

// NewRequest implements codec.Caller. Redis has no request ids: id is
// ignored.
func (c *redisCodec) NewRequest(_ uint64, attrs map[string]string, args []string) (*codec.Message, error) {
	words := args
	for k, v := range attrs {
		if k != AttrCommand {
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "attribute %q: a call takes only command (give the rest as --arg)", k)
		}
		words = append([]string{v}, args...)
	}
	if len(words) == 0 {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "a call needs a command: --arg PING")
	}
	b := make([][]byte, len(words))
	for i, w := range words {
		b[i] = []byte(w)
	}
	return decodeRequest(appendCommand(nil, b...), c.opt.maxFrame)
}

// Answer implements codec.Caller.
func (c *redisCodec) Answer(resp *codec.Message) (codec.Answer, error) {
	v, _, err := parseValue(resp.Raw)
	if err != nil {
		return codec.Answer{}, err
	}
	if v.t == typeError || v.t == typeBlobError {
		return codec.Answer{Status: codec.StatusError, Code: firstWord(string(v.str)), Error: string(v.str)}, nil
	}
	b, err := json.Marshal(v.plain())
	if err != nil {
		return codec.Answer{}, codec.Errorf(Name, codec.ErrMalformed, "answer: %v", err)
	}
	return codec.Answer{Status: codec.StatusOK, Value: string(b)}, nil
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}

// plain is a value as Go values json.Marshal takes.
func (v value) plain() any {
	if v.null {
		return nil
	}
	switch v.t {
	case typeInteger:
		return v.n
	case typeBool:
		return string(v.str) == "t"
	case typeArray, typeSet, typePush:
		out := make([]any, len(v.elems))
		for i, e := range v.elems {
			out[i] = e.plain()
		}
		return out
	case typeMap:
		out := make(map[string]any, len(v.elems)/2)
		for i := 0; i+1 < len(v.elems); i += 2 {
			out[v.elems[i].text()] = v.elems[i+1].plain()
		}
		return out
	}
	return string(v.str)
}

// Respond implements codec.Caller.
func (c *redisCodec) Respond(_ *codec.Message, reply string) (*codec.Message, error) {
	if reply == "" {
		return answer([]byte("+OK\r\n")), nil
	}
	d := json.NewDecoder(strings.NewReader(reply))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil || d.More() {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "reply %q is not one JSON value", reply)
	}
	b, err := appendJSON(nil, v, 0)
	if err != nil {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "reply: %v", err)
	}
	return answer(b), nil
}

func appendJSON(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxReplyDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxReplyDepth)
	}
	switch x := v.(type) {
	case nil:
		return appendNull(dst, false), nil
	case string:
		return appendBulkString(dst, x), nil
	case bool:
		if x {
			return appendInt(dst, 1), nil
		}
		return appendInt(dst, 0), nil
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return appendInt(dst, n), nil
		}
		f, err := x.Float64()
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number %s", x)
		}
		return appendBulkString(dst, x.String()), nil
	case []any:
		dst = appendHeader(dst, typeArray, len(x))
		for _, e := range x {
			var err error
			if dst, err = appendJSON(dst, e, depth+1); err != nil {
				return nil, err
			}
		}
		return dst, nil
	case map[string]any:
		dst = appendHeader(dst, typeArray, 2*len(x))
		for _, k := range sortedMapKeys(x) {
			dst = appendBulkString(dst, k)
			var err error
			if dst, err = appendJSON(dst, x[k], depth+1); err != nil {
				return nil, err
			}
		}
		return dst, nil
	}
	return nil, fmt.Errorf("cannot write %T", v)
}

func sortedMapKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Args implements codec.Caller: the command's words as a JSON list.
func (c *redisCodec) Args(req *codec.Message) (string, error) {
	cm, ok := req.Private.(*command)
	if !ok {
		return "", codec.Errorf(Name, codec.ErrUnsupported, "not a decoded command")
	}
	words := make([]string, len(cm.args))
	for i, a := range cm.args {
		words[i] = string(a)
	}
	b, err := json.Marshal(words)
	return string(b), err
}

var _ codec.Caller = (*redisCodec)(nil)
