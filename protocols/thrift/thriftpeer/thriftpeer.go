// Package thriftpeer is a small Apache Thrift server and client of the Echo
// test service (protocols/thrift/testdata/echo.thrift), for the demo, tests
// and the load harness. Both sides are the code Debian's thrift compiler
// generates, run by the real Go library (github.com/apache/thrift), so they
// are peers independent of Rosetta's own Thrift codec.
//
// A Server answers with its name in every reply, so a caller going through a
// proxy can tell which server answered. A Client is the generated client on
// one connection; Thrift clients do not pipeline, so its calls take turns.
// An EchoClient is the load harness's client: many echo calls in flight on
// one connection, paired with their replies by seqid.
package thriftpeer

import (
	"errors"
	"fmt"
	"strings"

	"github.com/apache/thrift/lib/go/thrift"
)

// Format is how both ends of a connection write Thrift: the transport and
// the protocol. The zero value is framed binary, what most servers speak.
type Format struct {
	// Transport is "framed" (the default), "buffered" (unframed) or
	// "header" (THeader).
	Transport string
	// Protocol is "binary" (the default, strict) or "compact".
	Protocol string
}

// String names the format ("framed binary").
func (f Format) String() string {
	f = f.withDefaults()
	return f.Transport + " " + f.Protocol
}

func (f Format) withDefaults() Format {
	if f.Transport == "" {
		f.Transport = "framed"
	}
	if f.Protocol == "" {
		f.Protocol = "binary"
	}
	return f
}

func (f Format) check() error {
	f = f.withDefaults()
	switch f.Transport {
	case "framed", "buffered", "header":
	default:
		return fmt.Errorf("thriftpeer: unknown transport %q (want framed, buffered or header)", f.Transport)
	}
	switch f.Protocol {
	case "binary", "compact":
	default:
		return fmt.Errorf("thriftpeer: unknown protocol %q (want binary or compact)", f.Protocol)
	}
	return nil
}

func (f Format) config() *thrift.TConfiguration {
	f = f.withDefaults()
	cfg := &thrift.TConfiguration{}
	if f.Transport == "header" {
		id := thrift.THeaderProtocolBinary
		if f.Protocol == "compact" {
			id = thrift.THeaderProtocolCompact
		}
		cfg.THeaderProtocolID = &id
	}
	return cfg
}

// factories are the transport and protocol factories of f, as a server and
// a client of f both use them.
func (f Format) factories(cfg *thrift.TConfiguration) (thrift.TTransportFactory, thrift.TProtocolFactory) {
	f = f.withDefaults()
	if f.Transport == "header" {
		return thrift.NewTTransportFactory(), thrift.NewTHeaderProtocolFactoryConf(cfg)
	}
	var tf thrift.TTransportFactory = thrift.NewTBufferedTransportFactory(4096)
	if f.Transport == "framed" {
		tf = thrift.NewTFramedTransportFactoryConf(thrift.NewTTransportFactory(), cfg)
	}
	var pf thrift.TProtocolFactory = thrift.NewTBinaryProtocolFactoryConf(cfg)
	if f.Protocol == "compact" {
		pf = thrift.NewTCompactProtocolFactoryConf(cfg)
	}
	return tf, pf
}

// Exception is the service's declared exception (Oops), which Echo throws
// for the text "oops".
type Exception struct {
	Why string
}

func (e *Exception) Error() string { return "thriftpeer: service exception: " + e.Why }

// Answerer returns the name of the server that wrote answer (a Ping reply
// or an echoed text), or "" when answer does not name one.
func Answerer(answer string) string {
	name, _, ok := strings.Cut(answer, ": ")
	if !ok {
		return ""
	}
	return name
}

// ApplicationError returns the TApplicationException in err's chain: what a
// server, or a proxy's local reply, sends when a call fails outside the
// handler (an unknown method, a missing route, a timeout).
func ApplicationError(err error) (thrift.TApplicationException, bool) {
	var ae thrift.TApplicationException
	if errors.As(err, &ae) {
		return ae, true
	}
	return nil, false
}

// applicationErrorNames are the TApplicationException types Apache Thrift defines.
var applicationErrorNames = map[int32]string{
	thrift.UNKNOWN_APPLICATION_EXCEPTION:  "UNKNOWN",
	thrift.UNKNOWN_METHOD:                 "UNKNOWN_METHOD",
	thrift.INVALID_MESSAGE_TYPE_EXCEPTION: "INVALID_MESSAGE_TYPE",
	thrift.WRONG_METHOD_NAME:              "WRONG_METHOD_NAME",
	thrift.BAD_SEQUENCE_ID:                "BAD_SEQUENCE_ID",
	thrift.MISSING_RESULT:                 "MISSING_RESULT",
	thrift.INTERNAL_ERROR:                 "INTERNAL_ERROR",
	thrift.PROTOCOL_ERROR:                 "PROTOCOL_ERROR",
	thrift.INVALID_TRANSFORM:              "INVALID_TRANSFORM",
	thrift.INVALID_PROTOCOL:               "INVALID_PROTOCOL",
	thrift.UNSUPPORTED_CLIENT_TYPE:        "UNSUPPORTED_CLIENT_TYPE",
}

// ApplicationErrorName names a TApplicationException type ("UNKNOWN_METHOD").
func ApplicationErrorName(typ int32) string {
	if n, ok := applicationErrorNames[typ]; ok {
		return n
	}
	return fmt.Sprintf("type %d", typ)
}
