package thrift

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	athrift "github.com/apache/thrift/lib/go/thrift"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// This file implements codec.Caller, for rosettactl call and serve. With no
// IDL at hand, a call's argument struct is given as JSON by field id, and
// answers are shown the same way. Messages are written and read by the
// Apache Thrift Go library (binary, compact; framed, buffered, THeader).
//
// A request's attributes:
//
//	method     the method (required)
//	service    the service of a multiplexed server: the name sent is "service:method"
//	transport  framed (default), buffered (unframed) or header (THeader)
//	protocol   binary (default, strict) or compact
//
// any other attribute is a THeader key/value header (transport header only).
//
// The argument, at most one, is a JSON object whose keys are field ids, with
// an optional type: {"1":"world"}, {"1:i32":5, "2:list<string>":["a"]}. A
// value without a type is written as JSON says: a string as string, true or
// false as bool, an integer as i32 when it fits (else i64), a number with a
// fraction as double, an array as a list of its first element's type, an
// object as a struct. Types: bool, byte (i8), i16, i32, i64, double, string,
// binary (base64 text), list<T>, set<T>, map<K,V> (keys given as JSON object
// keys) and struct. An answer's result struct is shown as {"0": value} (field
// 0 is the return value; others are declared exceptions); binary that is not
// printable UTF-8 is shown as "base64:...".

// maxCallDepth caps the nesting of a struct read or written here.
const maxCallDepth = 64

// callFormat is how a call is written: the transport and the protocol.
type callFormat struct {
	transport transport
	enc       encoding
}

func parseCallFormat(attrs map[string]string) (callFormat, error) {
	f := callFormat{transport: transportFramed, enc: encBinary}
	switch t := attrs["transport"]; t {
	case "", "framed":
	case "buffered", "unframed":
		f.transport = transportUnframed
	case "header":
		f.transport = transportHeader
	default:
		return f, codec.Errorf(Name, codec.ErrUnsupported, "attribute transport=%q: want framed, buffered or header", t)
	}
	switch p := attrs["protocol"]; p {
	case "", "binary":
	case "compact":
		f.enc = encCompact
	default:
		return f, codec.Errorf(Name, codec.ErrUnsupported, "attribute protocol=%q: want binary or compact", p)
	}
	return f, nil
}

// NewRequest implements codec.Caller.
func (c *Codec) NewRequest(id uint64, attrs map[string]string, args []string) (*codec.Message, error) {
	method := attrs[keyMethod]
	if method == "" {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "a call needs the attribute method")
	}
	f, err := parseCallFormat(attrs)
	if err != nil {
		return nil, err
	}
	name := method
	if s := attrs[keyService]; s != "" {
		name = s + ":" + method
	}
	var headers []codec.Attr
	for _, k := range sortedKeys(attrs) {
		switch k {
		case keyMethod, keyService, "transport", "protocol":
			continue
		}
		if f.transport != transportHeader {
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "attribute %q: only the header transport carries headers", k)
		}
		headers = append(headers, codec.Attr{Key: k, Value: attrs[k]})
	}
	if len(args) > 1 {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "a call takes one argument, the struct of its fields, not %d", len(args))
	}
	fields := "{}"
	if len(args) == 1 {
		fields = args[0]
	}
	st, err := parseStruct(fields)
	if err != nil {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "argument: %v", err)
	}
	b, err := writeMessage(f, name, athrift.CALL, int32(id), headers, st)
	if err != nil {
		return nil, err
	}
	return c.decodeOwn(f, b)
}

// decodeOwn decodes a message built here with a codec of the same
// transport, so the message's private state is what Encode expects.
func (c *Codec) decodeOwn(f callFormat, b []byte) (*codec.Message, error) {
	if c.class == classUnknown {
		c.class = classLengthPrefixed
		if f.transport == transportUnframed {
			c.class = classUnframed
		}
	}
	if len(b) > c.maxFrame+4 {
		return nil, codec.Errorf(Name, codec.ErrTooLarge, "message of %d bytes is over the limit of %d", len(b), c.maxFrame)
	}
	return c.Decode(b)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// writeMessage writes one message with the library.
func writeMessage(f callFormat, name string, typ athrift.TMessageType, seq int32, headers []codec.Attr, st *tstruct) ([]byte, error) {
	ctx := context.Background()
	buf := athrift.NewTMemoryBuffer()
	cfg := &athrift.TConfiguration{}
	var p athrift.TProtocol
	switch f.transport {
	case transportHeader:
		id := athrift.THeaderProtocolBinary
		if f.enc == encCompact {
			id = athrift.THeaderProtocolCompact
		}
		cfg.THeaderProtocolID = &id
		hp := athrift.NewTHeaderProtocolConf(buf, cfg)
		for _, h := range headers {
			hp.SetWriteHeader(h.Key, h.Value)
		}
		p = hp
	case transportFramed:
		p = newProtocol(athrift.NewTFramedTransportConf(buf, cfg), f.enc, cfg)
	default:
		p = newProtocol(buf, f.enc, cfg)
	}
	err := p.WriteMessageBegin(ctx, name, typ, seq)
	if err == nil {
		err = st.write(ctx, p, 0)
	}
	if err == nil {
		err = p.WriteMessageEnd(ctx)
	}
	if err == nil {
		err = p.Flush(ctx)
	}
	if err != nil {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "writing the message: %v", err)
	}
	return buf.Bytes(), nil
}

func newProtocol(t athrift.TTransport, enc encoding, cfg *athrift.TConfiguration) athrift.TProtocol {
	if enc == encCompact {
		return athrift.NewTCompactProtocolConf(t, cfg)
	}
	return athrift.NewTBinaryProtocolConf(t, cfg)
}

// Answer implements codec.Caller.
func (c *Codec) Answer(resp *codec.Message) (codec.Answer, error) {
	fi, ok := resp.Private.(*frameInfo)
	if !ok || resp.Kind != codec.KindResponse {
		return codec.Answer{}, codec.Errorf(Name, codec.ErrUnsupported, "not a decoded response")
	}
	ctx := context.Background()
	p, buf := payloadReader(resp.Raw, fi)
	if _, _, _, err := p.ReadMessageBegin(ctx); err != nil {
		return codec.Answer{}, codec.Errorf(Name, codec.ErrMalformed, "reading the answer: %v", err)
	}
	if fi.typ == msgException {
		ex := athrift.NewTApplicationException(0, "")
		if err := ex.Read(ctx, p); err != nil {
			return codec.Answer{}, codec.Errorf(Name, codec.ErrMalformed, "reading the TApplicationException: %v", err)
		}
		return codec.Answer{
			Status: codec.StatusError,
			Code:   fmt.Sprintf("TApplicationException %d", ex.TypeId()),
			Error:  ex.Error(),
		}, nil
	}
	v, err := readStruct(ctx, p, buf, 0)
	if err != nil {
		return codec.Answer{}, codec.Errorf(Name, codec.ErrMalformed, "reading the result: %v", err)
	}
	a := codec.Answer{Status: codec.StatusOK, Code: "REPLY", Value: toJSON(v)}
	for k := range v {
		if k != "0" {
			// A field other than the return value is a declared exception.
			a.Status, a.Error = codec.StatusError, "declared exception in field "+k
		}
	}
	return a, nil
}

// payloadReader reads the protocol message of a decoded frame.
func payloadReader(raw []byte, fi *frameInfo) (athrift.TProtocol, *athrift.TMemoryBuffer) {
	buf := athrift.NewTMemoryBufferLen(len(raw) - fi.msgOff)
	_, _ = buf.Write(raw[fi.msgOff:]) // a memory buffer takes everything
	cfg := &athrift.TConfiguration{TBinaryStrictRead: athrift.BoolPtr(false)}
	return newProtocol(buf, fi.enc, cfg), buf
}

// Respond implements codec.Caller: a REPLY with the request's name and
// seqid, in its transport and protocol, whose result struct is reply.
func (c *Codec) Respond(req *codec.Message, reply string) (*codec.Message, error) {
	if reply == "" {
		reply = "{}"
	}
	st, err := parseStruct(reply)
	if err != nil {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "reply: %v", err)
	}
	fi, ok := req.Private.(*frameInfo)
	if !ok || req.Kind != codec.KindRequest {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "not a decoded request")
	}
	f := callFormat{transport: fi.transport, enc: fi.enc}
	if f.enc == encBinaryOld {
		f.enc = encBinary // the library writes strict binary, which every reader takes
	}
	name := string(req.Raw[fi.nameOff:fi.nameEnd])
	b, err := writeMessage(f, name, athrift.REPLY, int32(fi.seqID), nil, st)
	if err != nil {
		return nil, err
	}
	return c.decodeOwn(f, b)
}

// Args implements codec.Caller: the request's argument struct as JSON.
func (c *Codec) Args(req *codec.Message) (string, error) {
	fi, ok := req.Private.(*frameInfo)
	if !ok {
		return "", codec.Errorf(Name, codec.ErrUnsupported, "not a decoded request")
	}
	ctx := context.Background()
	p, buf := payloadReader(req.Raw, fi)
	if _, _, _, err := p.ReadMessageBegin(ctx); err != nil {
		return "", codec.Errorf(Name, codec.ErrMalformed, "%v", err)
	}
	v, err := readStruct(ctx, p, buf, 0)
	if err != nil {
		return "", codec.Errorf(Name, codec.ErrMalformed, "reading the arguments: %v", err)
	}
	return toJSON(v), nil
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// readStruct reads a struct of any fields into a map keyed by field id.
func readStruct(ctx context.Context, p athrift.TProtocol, buf *athrift.TMemoryBuffer, depth int) (map[string]any, error) {
	if depth > maxCallDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxCallDepth)
	}
	if _, err := p.ReadStructBegin(ctx); err != nil {
		return nil, err
	}
	out := map[string]any{}
	for {
		_, t, id, err := p.ReadFieldBegin(ctx)
		if err != nil {
			return nil, err
		}
		if t == athrift.STOP {
			break
		}
		v, err := readValue(ctx, p, buf, t, depth+1)
		if err != nil {
			return nil, fmt.Errorf("field %d: %w", id, err)
		}
		out[strconv.Itoa(int(id))] = v
		if err := p.ReadFieldEnd(ctx); err != nil {
			return nil, err
		}
	}
	return out, p.ReadStructEnd(ctx)
}

// checkCount refuses a container that claims more elements than the bytes
// left could hold (every element takes at least one byte).
func checkCount(n int, buf *athrift.TMemoryBuffer) error {
	if n < 0 || n > buf.Len() {
		return fmt.Errorf("container of %d elements in %d bytes", n, buf.Len())
	}
	return nil
}

func readValue(ctx context.Context, p athrift.TProtocol, buf *athrift.TMemoryBuffer, t athrift.TType, depth int) (any, error) {
	switch t {
	case athrift.BOOL:
		return p.ReadBool(ctx)
	case athrift.BYTE:
		return p.ReadByte(ctx)
	case athrift.I16:
		return p.ReadI16(ctx)
	case athrift.I32:
		return p.ReadI32(ctx)
	case athrift.I64:
		return p.ReadI64(ctx)
	case athrift.DOUBLE:
		return p.ReadDouble(ctx)
	case athrift.STRING:
		b, err := p.ReadBinary(ctx)
		if err != nil {
			return nil, err
		}
		if printable(b) {
			return string(b), nil
		}
		return "base64:" + base64.StdEncoding.EncodeToString(b), nil
	case athrift.STRUCT:
		return readStruct(ctx, p, buf, depth)
	case athrift.LIST, athrift.SET:
		var et athrift.TType
		var n int
		var err error
		if t == athrift.LIST {
			et, n, err = p.ReadListBegin(ctx)
		} else {
			et, n, err = p.ReadSetBegin(ctx)
		}
		if err == nil {
			err = checkCount(n, buf)
		}
		if err != nil {
			return nil, err
		}
		out := make([]any, 0, n)
		for range n {
			v, err := readValue(ctx, p, buf, et, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		if t == athrift.LIST {
			return out, p.ReadListEnd(ctx)
		}
		return out, p.ReadSetEnd(ctx)
	case athrift.MAP:
		kt, vt, n, err := p.ReadMapBegin(ctx)
		if err == nil {
			err = checkCount(n, buf)
		}
		if err != nil {
			return nil, err
		}
		out := make(map[string]any, n)
		for range n {
			k, err := readValue(ctx, p, buf, kt, depth+1)
			if err != nil {
				return nil, err
			}
			v, err := readValue(ctx, p, buf, vt, depth+1)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = v
		}
		return out, p.ReadMapEnd(ctx)
	}
	return nil, fmt.Errorf("type %d cannot be shown", t)
}

// printable says whether b reads as text: UTF-8 without control
// characters other than tab and line ends.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f {
			return false
		}
	}
	return true
}

// ttype is a Thrift type as a call's JSON names it.
type ttype struct {
	t      athrift.TType
	binary bool   // string written from base64
	elem   *ttype // list, set; map value
	key    *ttype // map key
}

// tstruct is a struct to write: fields by id with their types and values.
type tstruct struct {
	fields []tfield
}

type tfield struct {
	id    int16
	typ   ttype
	value any
}

// parseStruct parses a JSON object of fields by id.
func parseStruct(text string) (*tstruct, error) {
	d := json.NewDecoder(strings.NewReader(text))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("%q is not JSON: %v", text, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%q: text after the JSON value", text)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%q is not a JSON object of fields by id ({\"1\": ...})", text)
	}
	return structOf(obj, 0)
}

func structOf(obj map[string]any, depth int) (*tstruct, error) {
	if depth > maxCallDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxCallDepth)
	}
	st := &tstruct{}
	for key, v := range obj {
		idText, typText, typed := strings.Cut(key, ":")
		id, err := strconv.ParseInt(strings.TrimSpace(idText), 10, 16)
		if err != nil {
			return nil, fmt.Errorf("field key %q: want a field id, optionally with a type (\"1\", \"1:i32\")", key)
		}
		var t ttype
		if typed {
			if t, err = parseType(strings.TrimSpace(typText)); err != nil {
				return nil, fmt.Errorf("field %d: %v", id, err)
			}
		} else {
			t = inferType(v)
		}
		st.fields = append(st.fields, tfield{id: int16(id), typ: t, value: v})
	}
	sort.Slice(st.fields, func(i, j int) bool { return st.fields[i].id < st.fields[j].id })
	return st, nil
}

var scalarTypes = map[string]athrift.TType{
	"bool": athrift.BOOL, "byte": athrift.BYTE, "i8": athrift.BYTE, "i16": athrift.I16,
	"i32": athrift.I32, "i64": athrift.I64, "double": athrift.DOUBLE, "string": athrift.STRING,
	"binary": athrift.STRING, "struct": athrift.STRUCT,
}

// parseType parses "i32", "list<string>", "map<string,list<i64>>".
func parseType(s string) (ttype, error) {
	if t, ok := scalarTypes[s]; ok {
		return ttype{t: t, binary: s == "binary"}, nil
	}
	open := strings.IndexByte(s, '<')
	if open < 0 || !strings.HasSuffix(s, ">") {
		return ttype{}, fmt.Errorf("unknown type %q (want bool, byte, i16, i32, i64, double, string, binary, struct, list<T>, set<T>, map<K,V>)", s)
	}
	outer, inner := s[:open], s[open+1:len(s)-1]
	switch outer {
	case "list", "set":
		e, err := parseType(strings.TrimSpace(inner))
		if err != nil {
			return ttype{}, err
		}
		t := athrift.TType(athrift.LIST)
		if outer == "set" {
			t = athrift.SET
		}
		return ttype{t: t, elem: &e}, nil
	case "map":
		k, v, ok := splitTopComma(inner)
		if !ok {
			return ttype{}, fmt.Errorf("type %q: want map<K,V>", s)
		}
		kt, err := parseType(strings.TrimSpace(k))
		if err != nil {
			return ttype{}, err
		}
		vt, err := parseType(strings.TrimSpace(v))
		if err != nil {
			return ttype{}, err
		}
		return ttype{t: athrift.MAP, key: &kt, elem: &vt}, nil
	}
	return ttype{}, fmt.Errorf("unknown type %q", s)
}

// splitTopComma splits "K,V" at the comma outside any <>.
func splitTopComma(s string) (string, string, bool) {
	depth := 0
	for i, r := range s {
		switch r {
		case '<':
			depth++
		case '>':
			depth--
		case ',':
			if depth == 0 {
				return s[:i], s[i+1:], true
			}
		}
	}
	return "", "", false
}

// inferType is the type a JSON value is written as when no type is given.
func inferType(v any) ttype {
	switch x := v.(type) {
	case bool:
		return ttype{t: athrift.BOOL}
	case json.Number:
		if n, err := x.Int64(); err == nil {
			if n >= math.MinInt32 && n <= math.MaxInt32 {
				return ttype{t: athrift.I32}
			}
			return ttype{t: athrift.I64}
		}
		return ttype{t: athrift.DOUBLE}
	case []any:
		e := ttype{t: athrift.STRING}
		if len(x) > 0 {
			e = inferType(x[0])
		}
		return ttype{t: athrift.LIST, elem: &e}
	case map[string]any:
		return ttype{t: athrift.STRUCT}
	}
	return ttype{t: athrift.STRING}
}

func (st *tstruct) write(ctx context.Context, p athrift.TProtocol, depth int) error {
	if err := p.WriteStructBegin(ctx, "args"); err != nil {
		return err
	}
	for _, f := range st.fields {
		if err := p.WriteFieldBegin(ctx, "", f.typ.t, f.id); err != nil {
			return err
		}
		if err := writeValue(ctx, p, f.typ, f.value, depth+1); err != nil {
			return fmt.Errorf("field %d: %w", f.id, err)
		}
		if err := p.WriteFieldEnd(ctx); err != nil {
			return err
		}
	}
	if err := p.WriteFieldStop(ctx); err != nil {
		return err
	}
	return p.WriteStructEnd(ctx)
}

func writeValue(ctx context.Context, p athrift.TProtocol, t ttype, v any, depth int) error {
	if depth > maxCallDepth {
		return fmt.Errorf("nested deeper than %d", maxCallDepth)
	}
	switch t.t {
	case athrift.BOOL:
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("%v is not a boolean", v)
		}
		return p.WriteBool(ctx, b)
	case athrift.BYTE, athrift.I16, athrift.I32, athrift.I64:
		return writeInt(ctx, p, t.t, v)
	case athrift.DOUBLE:
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%v is not a number", v)
		}
		f, err := n.Float64()
		if err != nil {
			return err
		}
		return p.WriteDouble(ctx, f)
	case athrift.STRING:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%v is not a string", v)
		}
		if t.binary {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return fmt.Errorf("binary: %v", err)
			}
			return p.WriteBinary(ctx, b)
		}
		return p.WriteString(ctx, s)
	case athrift.STRUCT:
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%v is not an object of fields by id", v)
		}
		st, err := structOf(obj, depth)
		if err != nil {
			return err
		}
		return st.write(ctx, p, depth)
	case athrift.LIST, athrift.SET:
		return writeList(ctx, p, t, v, depth)
	case athrift.MAP:
		return writeMap(ctx, p, t, v, depth)
	}
	return fmt.Errorf("type %d cannot be written", t.t)
}

func writeInt(ctx context.Context, p athrift.TProtocol, t athrift.TType, v any) error {
	n, ok := v.(json.Number)
	if !ok {
		if s, isStr := v.(string); isStr {
			n, ok = json.Number(s), true // map keys arrive as strings
		}
	}
	if !ok {
		return fmt.Errorf("%v is not an integer", v)
	}
	bits := map[athrift.TType]int{athrift.BYTE: 8, athrift.I16: 16, athrift.I32: 32, athrift.I64: 64}[t]
	i, err := strconv.ParseInt(string(n), 10, bits)
	if err != nil {
		return fmt.Errorf("%s is not a %d-bit integer", n, bits)
	}
	switch t {
	case athrift.BYTE:
		return p.WriteByte(ctx, int8(i))
	case athrift.I16:
		return p.WriteI16(ctx, int16(i))
	case athrift.I32:
		return p.WriteI32(ctx, int32(i))
	}
	return p.WriteI64(ctx, i)
}

func writeList(ctx context.Context, p athrift.TProtocol, t ttype, v any, depth int) error {
	list, ok := v.([]any)
	if !ok {
		return fmt.Errorf("%v is not a list", v)
	}
	var err error
	if t.t == athrift.LIST {
		err = p.WriteListBegin(ctx, t.elem.t, len(list))
	} else {
		err = p.WriteSetBegin(ctx, t.elem.t, len(list))
	}
	if err != nil {
		return err
	}
	for i, e := range list {
		if err := writeValue(ctx, p, *t.elem, e, depth+1); err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
	}
	if t.t == athrift.LIST {
		return p.WriteListEnd(ctx)
	}
	return p.WriteSetEnd(ctx)
}

func writeMap(ctx context.Context, p athrift.TProtocol, t ttype, v any, depth int) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%v is not an object", v)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if err := p.WriteMapBegin(ctx, t.key.t, t.elem.t, len(keys)); err != nil {
		return err
	}
	for _, k := range keys {
		if err := writeValue(ctx, p, *t.key, k, depth+1); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		if err := writeValue(ctx, p, *t.elem, obj[k], depth+1); err != nil {
			return fmt.Errorf("value of %q: %w", k, err)
		}
	}
	return p.WriteMapEnd(ctx)
}

var _ codec.Caller = (*Codec)(nil)
