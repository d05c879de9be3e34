package thrift

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/codec/codectest"
	"github.com/rosetta-mesh/rosetta/protocols/thrift/internal/echo"
)

// TestConformance runs the codec SDK's conformance kit once per
// protocol/transport combination, with the codec detecting the combination
// (auto) and with options pinning it.
func TestConformance(t *testing.T) {
	p, ok := codec.Lookup(Name)
	if !ok {
		t.Fatal("thrift is not registered")
	}
	for _, c := range combos {
		for _, mode := range []string{"auto", "pinned"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				reqs, resps := loadCaptures(t, c)
				s := codectest.Suite{
					Protocol:   p,
					Requests:   reqs,
					Responses:  resps,
					Oversized:  oversized(c),
					MaxFrame:   DefaultMaxFrame,
					CheckReply: checkReply(c),
				}
				if mode == "pinned" {
					s.Options = c.options()
				}
				if c.transport == "header" {
					s.Mutation = &codec.Attr{Key: "x-rosetta-route", Value: "canary"}
				}
				codectest.Run(t, s)
			})
		}
	}
}

// oversized is the head of a frame (or unframed message) that claims more
// than the default limit.
func oversized(c combo) []byte {
	switch c.transport {
	case "unframed":
		switch c.protocol {
		case "binary": // a method name of 2 GiB
			return []byte{0x80, 0x01, 0x00, 0x01, 0x7f, 0xff, 0xff, 0xff}
		case "compact":
			return []byte{0x82, 0x21, 0x01, 0xff, 0xff, 0xff, 0xff, 0x07}
		}
		// a method name as long as the limit
		return append(binary.BigEndian.AppendUint32(nil, DefaultMaxFrame), "pi"...)
	case "header":
		return append(binary.BigEndian.AppendUint32(nil, DefaultMaxFrame+1), headerMagic0, headerMagic1)
	}
	head := binary.BigEndian.AppendUint32(nil, DefaultMaxFrame+1)
	switch c.protocol {
	case "binary":
		return append(head, 0x80, 0x01, 0x00, 0x01)
	case "compact":
		return append(head, 0x82, 0x21)
	}
	return append(head, 0, 0, 0, 4)
}

// checkReply reads a local reply with Apache Thrift's Go client, exactly as
// the generated client reads an answer: TStandardClient.Recv checks the name
// and seqid and returns the TApplicationException it reads.
func checkReply(c combo) func(t *testing.T, req *codec.Message, status codec.Status, reply []byte) {
	return func(t *testing.T, req *codec.Message, status codec.Status, reply []byte) {
		t.Helper()
		buf := thrift.NewTMemoryBuffer()
		buf.Write(reply)
		prot := c.libProtocol(buf)
		method, _ := req.Get(keyMethod)
		err := thrift.NewTStandardClient(prot, prot).Recv(context.Background(), prot, int32(req.ID), method, echo.NewEchoPingResult())
		var ae thrift.TApplicationException
		if !errors.As(err, &ae) {
			t.Fatalf("the library read our %v reply as %v, want a TApplicationException", status, err)
		}
		want, _ := replyType(status)
		if ae.TypeId() != want || ae.Error() != "rosetta: "+status.String() {
			t.Fatalf("the library read type %d %q, want type %d %q", ae.TypeId(), ae.Error(), want, "rosetta: "+status.String())
		}
	}
}
