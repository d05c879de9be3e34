package trpc

import (
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// The proxy's per-request work: find the frame, decode it, read a routing
// attribute, and write it out with a new id.
func BenchmarkDecodeRoute(b *testing.B) {
	frame := captures(b)["request_unary"]
	c := newCodec(b, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := c.Split(frame); err != nil {
			b.Fatal(err)
		}
		m, err := c.Decode(frame)
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := m.Get("x-user"); !ok {
			b.Fatal("no x-user")
		}
	}
}

func BenchmarkEncodeNewID(b *testing.B) {
	c := newCodec(b, nil)
	m, err := c.Decode(captures(b)["request_unary"])
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.ID = uint64(i)
		if buf, err = c.Encode(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeUnchanged(b *testing.B) {
	c := newCodec(b, nil)
	m, err := c.Decode(captures(b)["response_unary"])
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = c.Encode(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeMutation(b *testing.B) {
	c := newCodec(b, nil)
	m, err := c.Decode(captures(b)["request_unary"])
	if err != nil {
		b.Fatal(err)
	}
	m.Set("x-route", "canary")
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = c.Encode(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReply(b *testing.B) {
	c := newCodec(b, nil)
	m, err := c.Decode(captures(b)["request_unary"])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Reply(m, codec.StatusNoRoute, "no route"); err != nil {
			b.Fatal(err)
		}
	}
}
