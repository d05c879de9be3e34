// Package wire reads whole frames from a byte stream with a codec's Split.
package wire

import (
	"fmt"
	"io"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// HardLimit bounds any single frame whatever a codec says, as a second guard
// against a codec that forgets its own limit.
const HardLimit = 64 << 20

const minRead = 16 << 10

// Reader returns one whole frame at a time. Each frame is a fresh slice the
// caller owns, so a decoded message may outlive the next read.
type Reader struct {
	r     io.Reader
	codec codec.Codec
	buf   []byte
	start int
	end   int
}

// NewReader reads frames from r, finding their ends with c.
func NewReader(r io.Reader, c codec.Codec) *Reader {
	return &Reader{r: r, codec: c, buf: make([]byte, minRead)}
}

// Buffered reports how many bytes are read but not yet returned as a frame.
func (fr *Reader) Buffered() int { return fr.end - fr.start }

// Next returns the next frame. Errors from Split are returned as they are: the
// stream cannot be resynchronised after a malformed frame.
func (fr *Reader) Next() ([]byte, error) {
	for {
		need := 1
		if fr.end > fr.start {
			sp, err := fr.codec.Split(fr.buf[fr.start:fr.end])
			if err != nil {
				return nil, err
			}
			if sp.Len > 0 {
				frame := make([]byte, sp.Len)
				copy(frame, fr.buf[fr.start:fr.start+sp.Len])
				fr.start += sp.Len
				return frame, nil
			}
			need = sp.Need
		}
		if err := fr.fill(need); err != nil {
			return nil, err
		}
	}
}

// fill reads at least need more bytes, making room first.
func (fr *Reader) fill(need int) error {
	have := fr.end - fr.start
	if have == 0 {
		fr.start, fr.end = 0, 0
	}
	if need <= 0 || have+need > HardLimit {
		return fmt.Errorf("wire: a frame of more than %d bytes: %w", HardLimit, codec.ErrTooLarge)
	}
	if fr.end+need > len(fr.buf) {
		fr.makeRoom(have + need)
	}
	target := fr.end + need
	for fr.end < target {
		n, err := fr.r.Read(fr.buf[fr.end:])
		fr.end += n
		if err != nil {
			if err == io.EOF && fr.end > fr.start {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// makeRoom moves the unread bytes to the front and grows the buffer so it
// holds size bytes; it shrinks back after a large frame has gone.
func (fr *Reader) makeRoom(size int) {
	have := fr.end - fr.start
	capacity := len(fr.buf)
	if size > capacity {
		capacity = max(size, 2*capacity)
	} else if capacity > 4*minRead && size <= minRead {
		capacity = minRead
	}
	if capacity != len(fr.buf) {
		nb := make([]byte, capacity)
		copy(nb, fr.buf[fr.start:fr.end])
		fr.buf = nb
	} else {
		copy(fr.buf, fr.buf[fr.start:fr.end])
	}
	fr.start, fr.end = 0, have
}
