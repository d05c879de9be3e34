package codec_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// panicky panics in Split and Decode.
type panicky struct{ codec.Codec }

func (panicky) Split([]byte) (codec.Split, error)     { panic("split bug") }
func (panicky) Decode([]byte) (*codec.Message, error) { panic("decode bug") }

// TestSafeCallsTurnPanicsIntoMalformed: a codec's panic comes back as an
// ErrMalformed error naming the call and the panic.
func TestSafeCallsTurnPanicsIntoMalformed(t *testing.T) {
	_, err := codec.SafeSplit(panicky{}, []byte("x"))
	if !errors.Is(err, codec.ErrMalformed) || !strings.Contains(err.Error(), "Split panicked: split bug") {
		t.Fatalf("SafeSplit: %v", err)
	}
	m, err := codec.SafeDecode(panicky{}, []byte("x"))
	if m != nil || !errors.Is(err, codec.ErrMalformed) || !strings.Contains(err.Error(), "Decode panicked: decode bug") {
		t.Fatalf("SafeDecode: %v, %v", m, err)
	}
}

// BenchmarkSafeSplit is what the guard costs a Split: the proxy makes four
// guarded calls per request (Split and Decode, downstream and upstream).
// Guard, for calls that return nothing, costs the same.
func BenchmarkSafeSplit(b *testing.B) {
	frame, err := toy.AppendFrame(nil, toy.KindRequest, 1, 0, nil, []byte("hi"))
	if err != nil {
		b.Fatal(err)
	}
	var c codec.Codec = toy.Codec{}
	b.Run("plain", func(b *testing.B) {
		for range b.N {
			_, _ = c.Split(frame)
		}
	})
	b.Run("safe", func(b *testing.B) {
		for range b.N {
			_, _ = codec.SafeSplit(c, frame)
		}
	})
	b.Run("guard", func(b *testing.B) {
		for range b.N {
			_ = codec.Guard("Split", func() { _, _ = c.Split(frame) })
		}
	})
}
