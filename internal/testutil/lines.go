package testutil

import (
	"bytes"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Lines is a codec of one frame per line, for tests of the machinery
// around codecs: every frame decodes as a response, and every message
// encodes as the line "req".
type Lines struct{}

// Split implements codec.Codec.
func (Lines) Split(b []byte) (codec.Split, error) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return codec.Split{Len: i + 1}, nil
	}
	return codec.Split{Need: 1}, nil
}

// Decode implements codec.Codec.
func (Lines) Decode(frame []byte) (*codec.Message, error) {
	return &codec.Message{Kind: codec.KindResponse, Raw: frame}, nil
}

// Encode implements codec.Codec.
func (Lines) Encode(dst []byte, _ *codec.Message) ([]byte, error) {
	return append(dst, "req\n"...), nil
}

// Reply implements codec.Codec.
func (Lines) Reply(*codec.Message, codec.Status, string) (*codec.Message, error) {
	return nil, nil
}
