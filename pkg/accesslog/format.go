package accesslog

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Entry is what is known of one request when it ends.
type Entry struct {
	Start    time.Time
	Listener string
	Route    string
	Cluster  string
	// Upstream is the address of the endpoint of the last try; empty when
	// the request went nowhere.
	Upstream string
	Protocol string
	Service  string
	Method   string
	// Status is the outcome, as in the proxy's metrics: "ok" or the error
	// the proxy or the upstream gave ("timeout", "no_route", ...).
	Status string
	// ResponseCode is the code the answer carried in the protocol's own
	// terms (codec.ResponseCode: Dubbo's status byte, a tRPC ret code),
	// as in Istio's metrics.
	ResponseCode  string
	Duration      time.Duration
	RequestBytes  int
	ResponseBytes int
	Tries         int
	TraceID       string
	// Caller is the downstream's verified identity (its SPIFFE principal);
	// empty for a plaintext caller. Downstream is its address.
	Caller     string
	Downstream string
	// Detail explains an answer the proxy made itself.
	Detail string
}

// Append appends e's line, with its newline, to dst.
func (c *Config) Append(dst []byte, e *Entry) []byte {
	if c.Format == JSON {
		dst = append(dst, '{')
	}
	for i, f := range c.Fields {
		if i > 0 {
			if c.Format == JSON {
				dst = append(dst, ',')
			} else {
				dst = append(dst, ' ')
			}
		}
		dst = c.appendField(dst, f, e)
	}
	if c.Format == JSON {
		dst = append(dst, '}')
	}
	return append(dst, '\n')
}

func (c *Config) appendField(dst []byte, f Field, e *Entry) []byte {
	if c.Format == JSON {
		dst = append(dst, '"')
		dst = append(dst, names[f]...)
		dst = append(dst, '"', ':')
	} else {
		dst = append(dst, names[f]...)
		dst = append(dst, '=')
	}
	switch f {
	case StartTime:
		return c.appendString(dst, e.Start.UTC().Format(time.RFC3339Nano))
	case DurationMS:
		return strconv.AppendFloat(dst, float64(e.Duration.Microseconds())/1000, 'f', -1, 64)
	case RequestBytes:
		return strconv.AppendInt(dst, int64(e.RequestBytes), 10)
	case ResponseBytes:
		return strconv.AppendInt(dst, int64(e.ResponseBytes), 10)
	case Tries:
		return strconv.AppendInt(dst, int64(e.Tries), 10)
	}
	return c.appendString(dst, e.text(f))
}

// text is a string field's value.
func (e *Entry) text(f Field) string {
	switch f {
	case Listener:
		return e.Listener
	case Route:
		return e.Route
	case Cluster:
		return e.Cluster
	case Upstream:
		return e.Upstream
	case Protocol:
		return e.Protocol
	case Service:
		return e.Service
	case Method:
		return e.Method
	case Status:
		return e.Status
	case ResponseCode:
		return e.ResponseCode
	case TraceID:
		return e.TraceID
	case Caller:
		return e.Caller
	case Downstream:
		return e.Downstream
	case Detail:
		return e.Detail
	}
	return ""
}

// appendString writes s as a JSON string, or in text as it is when that
// reads back unambiguously ("-" when empty) and quoted otherwise. Values
// come from the wire, so control bytes and invalid UTF-8 are escaped: a
// caller cannot forge a line.
func (c *Config) appendString(dst []byte, s string) []byte {
	if c.Format == Text {
		if s == "" {
			return append(dst, '-')
		}
		if plain(s) {
			return append(dst, s...)
		}
	}
	return appendQuoted(dst, s)
}

// plain: s needs no quotes in a text line.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b <= ' ' || b == '"' || b == '=' || b == '\\' || b >= utf8.RuneSelf {
			return false
		}
	}
	return s != "-"
}

const hex = "0123456789abcdef"

// appendQuoted writes s as a JSON string (also how text quotes a value).
func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			switch {
			case b == '"' || b == '\\':
				dst = append(dst, '\\', b)
			case b == '\n':
				dst = append(dst, '\\', 'n')
			case b == '\r':
				dst = append(dst, '\\', 'r')
			case b == '\t':
				dst = append(dst, '\\', 't')
			case b < ' ' || b == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			default:
				dst = append(dst, b)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			dst = append(dst, `\u202`...)
			dst = append(dst, hex[r&0xf])
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}

// TraceIDOf is the trace id of a W3C traceparent
// ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>"); empty when v
// is not one.
func TraceIDOf(v string) string {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' {
		return ""
	}
	id := v[3:35]
	if strings.Trim(id, "0123456789abcdef") != "" || id == "00000000000000000000000000000000" {
		return ""
	}
	return id
}
