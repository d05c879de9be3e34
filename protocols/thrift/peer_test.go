package thrift

import (
	"context"
	"fmt"
	"strings"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/protocols/thrift/internal/echo"
)

// combo is one protocol/transport combination as Apache Thrift's Go library
// sets it up. The captures of each live in testdata/<name>/.
type combo struct {
	name      string
	transport string // framed, unframed, header
	protocol  string // binary, oldbinary (non-strict), compact
}

var combos = []combo{
	{"binary_framed", "framed", "binary"},
	{"binary_unframed", "unframed", "binary"},
	{"oldbinary_unframed", "unframed", "oldbinary"},
	{"oldbinary_framed", "framed", "oldbinary"},
	{"compact_framed", "framed", "compact"},
	{"compact_unframed", "unframed", "compact"},
	{"binary_header", "header", "binary"},
	{"compact_header", "header", "compact"},
}

// options are the codec options that pin this combination.
func (c combo) options() codec.Options {
	return codec.Options{"transport": c.transport, "protocol": strings.TrimPrefix(c.protocol, "old")}
}

func (c combo) config() *thrift.TConfiguration {
	cfg := &thrift.TConfiguration{}
	if c.protocol == "oldbinary" {
		f := false
		cfg.TBinaryStrictWrite = &f
	}
	if c.transport == "header" {
		id := thrift.THeaderProtocolBinary
		if c.protocol == "compact" {
			id = thrift.THeaderProtocolCompact
		}
		cfg.THeaderProtocolID = &id
	}
	return cfg
}

// libProtocol wraps a raw transport (a socket or a memory buffer) as a peer
// of this combination does.
func (c combo) libProtocol(raw thrift.TTransport) thrift.TProtocol {
	cfg := c.config()
	switch c.transport {
	case "header":
		return thrift.NewTHeaderProtocolConf(raw, cfg)
	case "framed":
		raw = thrift.NewTFramedTransportConf(raw, cfg)
	default:
		raw = thrift.NewTBufferedTransport(raw, 4096)
	}
	if c.protocol == "compact" {
		return thrift.NewTCompactProtocolConf(raw, cfg)
	}
	return thrift.NewTBinaryProtocolConf(raw, cfg)
}

// handler is the Echo service of the captures and the interop servers: it
// names itself in answers and reports the x-route header it was sent.
type handler struct{ name string }

func (h handler) Ping(ctx context.Context, msg string) (string, error) {
	route, _ := thrift.GetHeader(ctx, "x-route")
	if route != "" {
		return fmt.Sprintf("%s: pong %s route=%s", h.name, msg, route), nil
	}
	return fmt.Sprintf("%s: pong %s", h.name, msg), nil
}

func (h handler) Fire(ctx context.Context, x string) error { return nil }

func (h handler) Echo(ctx context.Context, p *echo.Payload) (*echo.Payload, error) {
	if p.Text == "oops" {
		return nil, &echo.Oops{Why: h.name + " says oops"}
	}
	p.Text = h.name + ": " + p.Text
	return p, nil
}

// processor serves Echo under its multiplexed name "Echo" and by bare names.
func processor(name string) thrift.TProcessor {
	p := echo.NewEchoProcessor(handler{name: name})
	mp := thrift.NewTMultiplexedProcessor()
	mp.RegisterProcessor("Echo", p)
	mp.RegisterDefault(p)
	return mp
}

// payload is a struct with every kind of field, for the struct skipper.
func payload(text string) *echo.Payload {
	return &echo.Payload{
		Text:   text,
		N:      -42,
		Tags:   []string{"a", "bb", ""},
		Counts: map[string]int64{"x": -1 << 40}, // one entry: Go writes maps in random order
		Inner:  &echo.Inner{A: 7, B: -3, S: []int32{1, 2, 300}, On: true},
		Ratio:  0.25,
		Flag:   true,
		Blob:   []byte{0, 1, 2, 0xff},
		Inners: []*echo.Inner{{A: 1}, {B: 2, On: true}},
		Nested: map[int32][]bool{5: {true, false, true}},
	}
}
