package codec_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// panicky panics in every call.
type panicky struct{ codec.Codec }

func (panicky) Split([]byte) (codec.Split, error)     { panic("split bug") }
func (panicky) Decode([]byte) (*codec.Message, error) { panic("decode bug") }
func (panicky) Encode(dst []byte, _ *codec.Message) ([]byte, error) {
	_ = append(dst[:len(dst):len(dst)], "half"...)
	panic("encode bug")
}
func (panicky) Reply(*codec.Message, codec.Status, string) (*codec.Message, error) {
	panic("reply bug")
}
func (panicky) HeartbeatReply(*codec.Message) (*codec.Message, error) { panic("heartbeat bug") }

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
	dst := []byte("kept")
	out, err := codec.SafeEncode(panicky{}, dst, &codec.Message{})
	if string(out) != "kept" || !strings.Contains(err.Error(), "Encode panicked: encode bug") {
		t.Fatalf("SafeEncode: %q, %v; want dst as it was and the panic", out, err)
	}
	if m, err := codec.SafeReply(panicky{}, &codec.Message{}, codec.StatusTimeout, ""); m != nil || !strings.Contains(err.Error(), "Reply panicked: reply bug") {
		t.Fatalf("SafeReply: %v, %v", m, err)
	}
	if m, err := codec.SafeHeartbeatReply(panicky{}, &codec.Message{}); m != nil || !strings.Contains(err.Error(), "HeartbeatReply panicked: heartbeat bug") {
		t.Fatalf("SafeHeartbeatReply: %v, %v", m, err)
	}
	err = codec.Guard("a callback", func() { panic("callback bug") })
	var pe *codec.PanicError
	if !errors.As(err, &pe) || pe.Call != "a callback" || !strings.Contains(string(pe.Stack), "safe_test.go") {
		t.Fatalf("Guard: %v; want a PanicError with the stack of the panic", err)
	}
	if err := codec.Guard("a callback", func() {}); err != nil {
		t.Fatalf("Guard without a panic: %v", err)
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
