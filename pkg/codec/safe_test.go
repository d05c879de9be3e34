package codec_test

import (
	"errors"
	"strings"
	"testing"

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
