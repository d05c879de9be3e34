package redis

import (
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

func benchDecode(b *testing.B, peer codec.Peer, frame []byte) {
	c := newCodec(b, nil, peer)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for i := 0; i < b.N; i++ {
		sp, err := c.Split(frame)
		if err != nil || sp.Len != len(frame) {
			b.Fatal(sp, err)
		}
		m, err := c.Decode(frame)
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := m.Get(AttrKey); peer == codec.PeerClient && !ok {
			b.Fatal("no key")
		}
	}
}

func BenchmarkDecodeGet(b *testing.B) {
	benchDecode(b, codec.PeerClient, []byte("*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000001\r\n"))
}

func BenchmarkDecodeSet(b *testing.B) {
	benchDecode(b, codec.PeerClient, []byte("*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000001\r\n$3\r\nxxx\r\n"))
}

func BenchmarkDecodeBulkAnswer(b *testing.B) {
	benchDecode(b, codec.PeerServer, []byte("$3\r\nxxx\r\n"))
}

func BenchmarkDecodeArrayAnswer(b *testing.B) {
	benchDecode(b, codec.PeerServer, []byte("*3\r\n$1\r\na\r\n$-1\r\n$1\r\nc\r\n"))
}

func BenchmarkEncodeRequest(b *testing.B) {
	m := newRequest([]byte("GET"), []byte("key:000000000001"))
	c := newCodec(b, nil, codec.PeerServer)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, _ = c.Encode(buf[:0], m)
	}
}

func BenchmarkEncodeStripPrefix(b *testing.B) {
	m := newRequest([]byte("GET"), []byte("b:key:000000000001"))
	m.Mutations = []codec.Attr{{Key: AttrStripPrefix, Value: "b:"}}
	c := newCodec(b, nil, codec.PeerServer)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, _ = c.Encode(buf[:0], m)
	}
}
