package dubbo

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	hessian "github.com/apache/dubbo-go-hessian2"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// This file implements codec.Caller, for rosettactl call and serve.
//
// A request is built from these attributes; every other attribute becomes a
// string attachment:
//
//	interface      the service interface (required); also the path
//	method         the method (required)
//	version        the service version
//	group          the service group (an attachment, as Dubbo sends it)
//	types          the parameter type descriptor ("Ljava/lang/String;I");
//	               derived from the arguments when absent
//	dubbo_version  the Dubbo protocol version written first in the body ("2.0.2")
//
// Each argument is one JSON value, written as hessian2: a string, a
// number (an int when it fits in 32 bits, else a long; a double when it has
// a fraction or an exponent), a boolean, null, a list (java.util.List) or an
// object (java.util.Map with string keys). With types given, a number is
// written as the type says: I, S, B int; J long; F, D double; and the boxed
// java.lang classes of the same. Objects of a Java class (POJOs) are not
// supported: hessian2 would need the class's field list.
const (
	attrTypes        = "types"
	attrDubboVersion = "dubbo_version"
	attrGroup        = "group"
	defaultDubbo     = "2.0.2"
)

// NewRequest implements codec.Caller.
func (c *Codec) NewRequest(id uint64, attrs map[string]string, args []string) (*codec.Message, error) {
	iface, method := attrs[AttrInterface], attrs[AttrMethod]
	if iface == "" || method == "" {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "a call needs the attributes interface and method")
	}
	values, err := jsonArgs(args)
	if err != nil {
		return nil, err
	}
	types, ok := attrs[attrTypes]
	if ok {
		if values, err = typed(values, types); err != nil {
			return nil, err
		}
	} else {
		types = descriptor(values)
	}
	dubboVersion := attrs[attrDubboVersion]
	if dubboVersion == "" {
		dubboVersion = defaultDubbo
	}
	atts := map[string]any{keyPath: iface, AttrInterface: iface}
	for k, v := range attrs {
		switch k {
		case AttrInterface, AttrMethod, attrTypes, attrDubboVersion:
		case keyVersion:
			if v != "" {
				atts[k] = v
			}
		default:
			atts[k] = v
		}
	}
	e := hessian.NewEncoder()
	for _, v := range []any{dubboVersion, iface, attrs[keyVersion], method, types} {
		if err := e.Encode(v); err != nil {
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "writing the request: %v", err)
		}
	}
	for i, v := range values {
		if err := e.Encode(v); err != nil {
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "argument %d: %v", i+1, err)
		}
	}
	if err := e.Encode(atts); err != nil {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "attachments: %v", err)
	}
	return c.frameOf(flagRequest|flagTwoWay, 0, id, e.Buffer())
}

// frameOf puts a header before body and decodes the frame.
func (c *Codec) frameOf(flags, status byte, id uint64, body []byte) (*codec.Message, error) {
	b := make([]byte, headerLen, headerLen+len(body))
	b = append(b, body...)
	if len(b) > c.maxFrame {
		return nil, codec.Errorf(Name, codec.ErrTooLarge, "frame of %d bytes is over the limit of %d", len(b), c.maxFrame)
	}
	b[0], b[1], b[2], b[3] = magicHigh, magicLow, flags|serialHessian2, status
	binary.BigEndian.PutUint64(b[4:], id)
	binary.BigEndian.PutUint32(b[12:], uint32(len(body)))
	return c.Decode(b)
}

// jsonArgs parses each argument as one JSON value, numbers kept as text.
func jsonArgs(args []string) ([]any, error) {
	out := make([]any, 0, len(args))
	for i, a := range args {
		v, err := parseJSON(a)
		if err != nil {
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "argument %d (%q) is not one JSON value: %v", i+1, a, err)
		}
		h, err := toHessian(v)
		if err != nil {
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "argument %d: %v", i+1, err)
		}
		out = append(out, h)
	}
	return out, nil
}

func parseJSON(s string) (any, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("text after the value")
	}
	return v, nil
}

// toHessian turns a JSON value into the Go value hessian2 writes.
func toHessian(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			if n >= math.MinInt32 && n <= math.MaxInt32 {
				return int32(n), nil
			}
			return n, nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %s: %v", x, err)
		}
		return f, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			h, err := toHessian(e)
			if err != nil {
				return nil, err
			}
			out[i] = h
		}
		return out, nil
	case map[string]any:
		out := make(map[any]any, len(x))
		for k, e := range x {
			h, err := toHessian(e)
			if err != nil {
				return nil, err
			}
			out[k] = h
		}
		return out, nil
	}
	return v, nil // string, bool, nil
}

// descriptor derives the parameter type descriptor of values.
func descriptor(values []any) string {
	var b strings.Builder
	for _, v := range values {
		switch v.(type) {
		case string:
			b.WriteString("Ljava/lang/String;")
		case int32:
			b.WriteString("I")
		case int64:
			b.WriteString("J")
		case float64:
			b.WriteString("D")
		case bool:
			b.WriteString("Z")
		case []any:
			b.WriteString("Ljava/util/List;")
		case map[any]any:
			b.WriteString("Ljava/util/Map;")
		default:
			b.WriteString("Ljava/lang/Object;")
		}
	}
	return b.String()
}

// splitDescriptor splits a parameter type descriptor into its types.
func splitDescriptor(d string) ([]string, error) {
	var out []string
	for i := 0; i < len(d); {
		start := i
		for i < len(d) && d[i] == '[' {
			i++
		}
		if i == len(d) {
			return nil, fmt.Errorf("descriptor %q ends inside an array type", d)
		}
		if d[i] == 'L' {
			end := strings.IndexByte(d[i:], ';')
			if end < 0 {
				return nil, fmt.Errorf("descriptor %q: class type at %d has no ';'", d, i)
			}
			i += end + 1
		} else {
			if !strings.ContainsRune("ZBCSIJFD", rune(d[i])) {
				return nil, fmt.Errorf("descriptor %q: unknown type %q at %d", d, d[i], i)
			}
			i++
		}
		out = append(out, d[start:i])
	}
	return out, nil
}

// typed converts numbers in values to what the descriptor types say.
func typed(values []any, types string) ([]any, error) {
	ts, err := splitDescriptor(types)
	if err != nil {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "attribute types: %v", err)
	}
	if len(ts) != len(values) {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "attribute types names %d parameters, the call has %d arguments", len(ts), len(values))
	}
	out := make([]any, len(values))
	for i, v := range values {
		if out[i], err = asType(v, ts[i]); err != nil {
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "argument %d as %s: %v", i+1, ts[i], err)
		}
	}
	return out, nil
}

func asType(v any, t string) (any, error) {
	var n float64
	switch x := v.(type) {
	case int32:
		n = float64(x)
	case int64:
		n = float64(x)
	case float64:
		n = x
	default:
		return v, nil
	}
	switch t {
	case "I", "S", "B", "Ljava/lang/Integer;", "Ljava/lang/Short;", "Ljava/lang/Byte;":
		if n != math.Trunc(n) || n < math.MinInt32 || n > math.MaxInt32 {
			return nil, fmt.Errorf("%v is not a 32-bit integer", v)
		}
		return int32(n), nil
	case "J", "Ljava/lang/Long;":
		if x, ok := v.(int64); ok {
			return x, nil
		}
		if n != math.Trunc(n) {
			return nil, fmt.Errorf("%v is not an integer", v)
		}
		return int64(n), nil
	case "F", "D", "Ljava/lang/Float;", "Ljava/lang/Double;":
		return n, nil
	}
	return v, nil
}

// Answer implements codec.Caller: the value or the exception of a response,
// or the message of an error status.
func (c *Codec) Answer(resp *codec.Message) (codec.Answer, error) {
	f, ok := resp.Private.(*frame)
	if !ok || resp.Kind != codec.KindResponse {
		return codec.Answer{}, codec.Errorf(Name, codec.ErrUnsupported, "not a decoded response")
	}
	status := resp.Raw[3]
	a := codec.Answer{Status: resp.Status, Code: fmt.Sprintf("%d", status)}
	if name, ok := statusNames[status]; ok {
		a.Code += " " + name
	}
	body := f.attrs.body
	if status != statusOK {
		v, _, err := libValue(body, 0)
		if err != nil {
			return a, codec.Errorf(Name, codec.ErrMalformed, "error message: %v", err)
		}
		a.Error = fmt.Sprint(v)
		return a, nil
	}
	if f.attrs.flags&serialMask != serialHessian2 {
		return a, codec.Errorf(Name, codec.ErrUnsupported, "serialization %d is not hessian2", f.attrs.flags&serialMask)
	}
	if f.attrs.respFlag == respNull || f.attrs.respFlag == respNullWithAtts {
		a.Value = "null"
		return a, nil
	}
	v, _, err := libValue(body, f.attrs.argsOff)
	if err != nil {
		return a, codec.Errorf(Name, codec.ErrMalformed, "response value: %v", err)
	}
	text := toText(v)
	if f.attrs.respFlag == respException || f.attrs.respFlag == respExceptionWithAtts {
		a.Error = text
		return a, nil
	}
	a.Value = text
	return a, nil
}

var statusNames = map[byte]string{
	statusOK: "OK", statusClientTimeout: "CLIENT_TIMEOUT", statusServerTimeout: "SERVER_TIMEOUT",
	statusBadRequest: "BAD_REQUEST", statusBadResponse: "BAD_RESPONSE", statusServiceNotFound: "SERVICE_NOT_FOUND",
	statusServiceError: "SERVICE_ERROR", statusServerError: "SERVER_ERROR", statusClientError: "CLIENT_ERROR",
	statusThreadpoolExhaust: "SERVER_THREADPOOL_EXHAUSTED_ERROR",
}

// libValue reads the value at off with the library and returns it with the
// offset after it. The codec's own skipper walks the value first: it checks
// every length and count against the bytes there are, which the library does
// not (a list claiming two billion elements would be allocated), and the
// library then reads only the value's bytes. The library still panics on
// some malformed input; that is bad input too, so it becomes an error.
func libValue(body []byte, off int) (v any, next int, err error) {
	sc := scanner{b: body}
	end, err := sc.skip(off, 0)
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		if p := recover(); p != nil {
			v, next, err = nil, 0, fmt.Errorf("hessian2 decoder failed: %v", p)
		}
	}()
	v, err = hessian.NewDecoder(body[off:end]).Decode()
	return v, end, err
}

// toText shows a decoded hessian2 value as JSON when it maps to JSON.
func toText(v any) string {
	b, err := json.Marshal(plain(v))
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// plain turns maps with non-string keys into maps with string keys, so
// json.Marshal takes them.
func plain(v any) any {
	switch x := v.(type) {
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = plain(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plain(e)
		}
		return out
	case error:
		return x.Error()
	}
	return v
}

// Respond implements codec.Caller: an OK response whose value is reply, one
// JSON value written as NewRequest writes arguments ("" is null).
func (c *Codec) Respond(req *codec.Message, reply string) (*codec.Message, error) {
	if req.Kind != codec.KindRequest {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "cannot respond to a %s", req.Kind)
	}
	e := hessian.NewEncoder()
	if reply == "" {
		_ = e.Encode(int32(respNull)) // an int never fails to encode
	} else {
		values, err := jsonArgs([]string{reply})
		if err != nil {
			return nil, err
		}
		_ = e.Encode(int32(respValue))
		if err := e.Encode(values[0]); err != nil {
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "reply: %v", err)
		}
	}
	return c.frameOf(0, statusOK, req.ID, e.Buffer())
}

// Args implements codec.Caller: the request's parameter types and arguments,
// as JSON.
func (c *Codec) Args(req *codec.Message) (string, error) {
	f, ok := req.Private.(*frame)
	if !ok || !f.attrs.request {
		return "", codec.Errorf(Name, codec.ErrUnsupported, "not a decoded hessian2 request")
	}
	body := f.attrs.body
	tv, off, err := libValue(body, f.attrs.argsOff)
	if err != nil {
		return "", codec.Errorf(Name, codec.ErrMalformed, "parameter types: %v", err)
	}
	types, _ := tv.(string)
	ts, err := splitDescriptor(types)
	if err != nil {
		return "", codec.Errorf(Name, codec.ErrMalformed, "%v", err)
	}
	args := make([]any, 0, len(ts))
	for i := range ts {
		var v any
		if v, off, err = libValue(body, off); err != nil {
			return "", codec.Errorf(Name, codec.ErrMalformed, "argument %d: %v", i+1, err)
		}
		args = append(args, plain(v))
	}
	return fmt.Sprintf("types=%q args=%s", types, toText(args)), nil
}

var _ codec.Caller = (*Codec)(nil)
