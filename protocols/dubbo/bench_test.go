package dubbo

import (
	"strings"
	"testing"

	hessian "github.com/apache/dubbo-go-hessian2"
)

// benchRequest is a two-way request with a 1 KB string argument, written by
// the library.
func benchRequest(b *testing.B) []byte {
	b.Helper()
	req := hessian.NewRequest([]any{strings.Repeat("p", 1024), int32(1)}, map[string]string{"traceid": "t-1"})
	frame, err := write(greeter, hessian.DubboHeader{Type: hessian.PackageRequest_TwoWay, ID: 7}, req)
	if err != nil {
		b.Fatal(err)
	}
	return frame
}

// BenchmarkDecode decodes what routing needs: interface, method, version.
func BenchmarkDecode(b *testing.B) {
	frame := benchRequest(b)
	c := newTestCodec(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		m, err := c.Decode(frame)
		if err != nil {
			b.Fatal(err)
		}
		if v, _ := m.Get("method"); v != "sayHello" {
			b.Fatal(v)
		}
		m.Get("interface")
		m.Get("version")
	}
}

// BenchmarkDecodeAttachments also routes on an attachment (group), which steps
// over the arguments.
func BenchmarkDecodeAttachments(b *testing.B) {
	frame := benchRequest(b)
	c := newTestCodec(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		m, err := c.Decode(frame)
		if err != nil {
			b.Fatal(err)
		}
		if v, _ := m.Get("group"); v != "blue" {
			b.Fatal(v)
		}
	}
}

// BenchmarkEncode rewrites the id, the multiplexing fast path.
func BenchmarkEncode(b *testing.B) {
	c := newTestCodec(b)
	m, err := c.Decode(benchRequest(b))
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(m.Raw)))
	for b.Loop() {
		m.ID++
		if dst, err = c.Encode(dst[:0], m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeMutation adds an attachment.
func BenchmarkEncodeMutation(b *testing.B) {
	c := newTestCodec(b)
	m, err := c.Decode(benchRequest(b))
	if err != nil {
		b.Fatal(err)
	}
	m.Set("x-rosetta", "canary")
	dst := make([]byte, 0, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(m.Raw)))
	for b.Loop() {
		if dst, err = c.Encode(dst[:0], m); err != nil {
			b.Fatal(err)
		}
	}
}
