// Package wire reads whole frames from a byte stream with a codec's Split,
// and combines writes to a connection.
package wire

import (
	"fmt"
	"io"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

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
	limits     Limits
	// held is what the current buffer takes from the budget: its bytes
	// past the first chunk, while a frame not yet whole needs them.
	held int
}

// NewReader reads frames from r, finding their ends with c.
func NewReader(r io.Reader, c codec.Codec) *Reader {
	return &Reader{r: r, codec: c, buf: make([]byte, chunk)}
}

// SetLimits bounds what fr holds for an unfinished frame; call it before
// the first Next.
func (fr *Reader) SetLimits(l Limits) { fr.limits = l }

// Release returns what fr holds to the budget; the reader must not be used
// after.
func (fr *Reader) Release() {
	fr.limits.Budget.give(fr.held)
	fr.held = 0
}

// LimitError wraps err with the first bytes of the frame not yet whole.
func (fr *Reader) LimitError(err error) error { return fr.limitError(err) }

func (fr *Reader) limitError(err error) *LimitError {
	head := fr.buf[fr.start:min(fr.end, fr.start+headLen)]
	return &LimitError{Err: err, Head: append([]byte(nil), head...)}
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
				return fr.take(sp.Len), nil
			}
			need = sp.Need
		}
		if err := fr.fill(need); err != nil {
			return nil, err
		}
	}
}

// take hands out the first n buffered bytes as a frame. A buffer grown for
// it goes with the frame: its budget is returned, and the bytes after the
// frame move to a fresh buffer at the next read.
func (fr *Reader) take(n int) []byte {
	end := fr.start + n
	frame := fr.buf[fr.start:end:end]
	fr.start = end
	if fr.held > 0 {
		fr.Release()
		fr.buf = fr.buf[:fr.end:fr.end]
	}
	return frame
}

// fill reads until at least need more bytes are buffered. The buffer grows
// with what arrives, at most doubling, never to a size the peer only
// claims: a peer must send the bytes the proxy holds for it.
func (fr *Reader) fill(need int) error {
	have := fr.end - fr.start
	if err := fr.check(have + need); err != nil {
		return err
	}
	want := have + need
	if fr.end+need > len(fr.buf) {
		if err := fr.grow(want); err != nil {
			return err
		}
	}
	for fr.end-fr.start < want {
		if fr.end == len(fr.buf) {
			if err := fr.grow(want); err != nil {
				return err
			}
		}
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

// check refuses a frame of size bytes over a limit before any of it is
// held.
func (fr *Reader) check(size int) error {
	if size <= 0 || size > HardLimit {
		return fmt.Errorf("wire: a frame of more than %d bytes: %w", HardLimit, codec.ErrTooLarge)
	}
	if l := fr.limits.PerConn; l > 0 && size > l {
		return fr.limitError(fmt.Errorf("%w (%d bytes, limit %d)", ErrConnLimit, size, l))
	}
	return nil
}

// grow moves the unread bytes to a buffer with room for more: want bytes
// when that is at most twice what is buffered, else twice that; at least a
// quarter more, so a codec that asks for a byte at a time does not cost a
// copy per byte. What it has past the first chunk is taken from the budget.
func (fr *Reader) grow(want int) error {
	have := fr.end - fr.start
	size := max(chunk, min(want, 2*have), have+have/4)
	if l := fr.limits.PerConn; l > 0 {
		// check has made sure want <= l, so size stays above have; it
		// must not jump to want, which is what the peer declared.
		size = min(size, l)
	}
	extra := max(size-chunk, 0)
	if d := extra - fr.held; d > 0 && !fr.limits.Budget.take(d) {
		return fr.limitError(fmt.Errorf("%w (%d bytes in use of %d)", ErrOverBudget, fr.limits.Budget.InUse(), fr.limits.Budget.Limit()))
	} else if d < 0 {
		fr.limits.Budget.give(-d)
	}
	fr.held = extra
	fr.moveTail(size)
	return nil
}

// moveTail moves the unread bytes to a new buffer of size bytes; the old
// one stays with the frames already handed out.
func (fr *Reader) moveTail(size int) {
	nb := make([]byte, size)
	have := copy(nb, fr.buf[fr.start:fr.end])
	fr.buf, fr.start, fr.end = nb, 0, have
}
