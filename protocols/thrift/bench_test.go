package thrift

import (
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

func benchDecode(b *testing.B, combo, capture string) {
	frame := readCapture(b, comboNamed(b, combo), capture)
	c := newCodec(b, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		sp, err := c.Split(frame)
		if err != nil || sp.Len != len(frame) {
			b.Fatal(sp, err)
		}
		m, err := c.Decode(frame)
		if err != nil {
			b.Fatal(err)
		}
		if v, _ := m.Get(keyMethod); v != "echo" && v != "ping" {
			b.Fatal(v)
		}
	}
}

// BenchmarkDecodeFramed reads a framed binary request: the length and the
// message header only.
func BenchmarkDecodeFramed(b *testing.B) { benchDecode(b, "binary_framed", "echo_request") }

// BenchmarkDecodeUnframedBinary walks a whole unframed binary request twice
// (Split finds its end, Decode checks it).
func BenchmarkDecodeUnframedBinary(b *testing.B) { benchDecode(b, "binary_unframed", "echo_request") }

// BenchmarkDecodeUnframedCompact walks a whole unframed compact request.
func BenchmarkDecodeUnframedCompact(b *testing.B) {
	benchDecode(b, "compact_unframed", "echo_request")
}

// BenchmarkDecodeHeader reads a THeader request with two info headers.
func BenchmarkDecodeHeader(b *testing.B) { benchDecode(b, "compact_header", "ping_request") }

func benchEncode(b *testing.B, combo, capture string, mutate bool) {
	c := newCodec(b, nil)
	m, err := c.Decode(readCapture(b, comboNamed(b, combo), capture))
	if err != nil {
		b.Fatal(err)
	}
	if mutate {
		m.Set("x-rosetta", "canary")
	}
	dst := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(m.Raw)))
	for b.Loop() {
		m.ID = m.ID%100000 + 100 // 1-3 byte compact varints
		if dst, err = c.Encode(dst[:0], m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeBinary rewrites the seqid in place: the multiplexing path.
func BenchmarkEncodeBinary(b *testing.B) { benchEncode(b, "binary_framed", "echo_request", false) }

// BenchmarkEncodeCompact rewrites a compact varint seqid and the frame length.
func BenchmarkEncodeCompact(b *testing.B) { benchEncode(b, "compact_framed", "echo_request", false) }

// BenchmarkEncodeHeaderMutation adds an info header to a THeader request.
func BenchmarkEncodeHeaderMutation(b *testing.B) {
	benchEncode(b, "compact_header", "ping_request", true)
}

// BenchmarkReply builds an UNKNOWN_METHOD TApplicationException.
func BenchmarkReply(b *testing.B) {
	c := newCodec(b, nil)
	req, err := c.Decode(readCapture(b, comboNamed(b, "binary_framed"), "ping_request"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Reply(req, codec.StatusNoRoute, "rosetta: no route"); err != nil {
			b.Fatal(err)
		}
	}
}
