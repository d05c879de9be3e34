package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

func toyFrame(t *testing.T, id uint64, body int) []byte {
	t.Helper()
	f, err := toy.AppendFrame(nil, toy.KindRequest, id, 0, map[string]string{"k": "v"}, bytes.Repeat([]byte{byte(id)}, body))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Frames handed out stay intact while later frames are read, even when the
// buffer runs out of room and a frame is larger than it.
func TestReaderFramesSurviveLaterReads(t *testing.T) {
	var stream []byte
	var want [][]byte
	for i, size := range []int{10, 5000, 20000, 3, 70000, 1, 16000} {
		f := toyFrame(t, uint64(i+1), size)
		want = append(want, f)
		stream = append(stream, f...)
	}
	for _, r := range []io.Reader{bytes.NewReader(stream), iotest.OneByteReader(bytes.NewReader(stream)), iotest.HalfReader(bytes.NewReader(stream))} {
		fr := wire.NewReader(r, toy.Codec{})
		var got [][]byte
		for {
			f, err := fr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, f)
		}
		if len(got) != len(want) {
			t.Fatalf("%d frames, want %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("frame %d changed after later reads", i)
			}
		}
	}
}

func TestReaderErrors(t *testing.T) {
	over := binary.BigEndian.AppendUint32(nil, toy.MaxFrame+1)
	if _, err := wire.NewReader(bytes.NewReader(over), toy.Codec{}).Next(); !errors.Is(err, codec.ErrTooLarge) {
		t.Fatalf("an oversized length: %v", err)
	}
	cut := toyFrame(t, 1, 100)[:50]
	if _, err := wire.NewReader(bytes.NewReader(cut), toy.Codec{}).Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("a stream that ends inside a frame: %v", err)
	}
}
