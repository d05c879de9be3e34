// Package wire reads whole frames from a byte stream with a codec's Split,
// and combines writes to a connection.
package wire

import (
	"fmt"
	"io"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// HardLimit bounds any single frame whatever a codec says, as a second guard
// against a codec that forgets its own limit.
const HardLimit = 64 << 20

const chunk = 16 << 10

// Reader returns one whole frame at a time.
//
// Frames are slices of the read buffer, not copies: a buffer is never written
// again where it has handed out a frame, and when it runs out of room the
// unread tail moves to a fresh buffer. So a decoded message may outlive later
// reads, and a read of many small frames costs one allocation per buffer, not
// one per frame.
type Reader struct {
	// BeforeRead, when set, runs before every read that may block: the
	// place to flush a Batch.
	BeforeRead func()
	r          io.Reader
	codec      codec.Codec
	buf        []byte
	start      int
	end        int
}

// NewReader reads frames from r, finding their ends with c.
func NewReader(r io.Reader, c codec.Codec) *Reader {
	return &Reader{r: r, codec: c, buf: make([]byte, chunk)}
}

// Buffered reports how many bytes are read but not yet returned as a frame.
func (fr *Reader) Buffered() int { return fr.end - fr.start }

// Next returns the next frame; the caller owns it. Errors from Split are
// returned as they are: a stream cannot be resynchronised after a malformed
// frame.
func (fr *Reader) Next() ([]byte, error) {
	for {
		need := 1
		if fr.end > fr.start {
			sp, err := codec.SafeSplit(fr.codec, fr.buf[fr.start:fr.end])
			if err != nil {
				return nil, err
			}
			if sp.Len > 0 {
				end := fr.start + sp.Len
				frame := fr.buf[fr.start:end:end]
				fr.start = end
				return frame, nil
			}
			need = sp.Need
		}
		if err := fr.fill(need); err != nil {
			return nil, err
		}
	}
}

// fill reads until at least need more bytes are buffered.
func (fr *Reader) fill(need int) error {
	have := fr.end - fr.start
	if need <= 0 || have+need > HardLimit {
		return fmt.Errorf("wire: a frame of more than %d bytes: %w", HardLimit, codec.ErrTooLarge)
	}
	if fr.end+need > len(fr.buf) {
		fr.moveTail(have + need)
	}
	target := fr.end + need
	for fr.end < target {
		if fr.BeforeRead != nil {
			fr.BeforeRead()
		}
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

// moveTail moves the unread bytes to a new buffer of at least size bytes;
// the old one stays with the frames already handed out.
func (fr *Reader) moveTail(size int) {
	nb := make([]byte, max(size, chunk))
	have := copy(nb, fr.buf[fr.start:fr.end])
	fr.buf, fr.start, fr.end = nb, 0, have
}
