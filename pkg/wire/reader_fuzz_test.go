package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// FuzzReader feeds a fuzzed stream through a Reader in reads of fuzzed
// sizes, under a fuzzed per-connection limit and budget. The Reader must
// return exactly the frames the codec finds in the whole stream at once,
// keep every frame intact through later reads, end with the error that
// explains where it stopped, and never hold more than its limits allow.
func FuzzReader(f *testing.F) {
	for _, s := range readerSeeds() {
		f.Add(s, []byte{1, 7, 200, 3}, uint32(0), uint32(0))
		f.Add(s, []byte{255}, uint32(20000), uint32(4096))
	}
	// A head declaring 100,000 bytes under a larger limit, then a trickle.
	f.Add(binary.BigEndian.AppendUint32(nil, 100_000), []byte{0}, uint32(200_000), uint32(0))
	f.Fuzz(func(t *testing.T, stream, sizes []byte, perConn, budget uint32) {
		want, tail, splitErr := splitAll(stream)
		l := Limits{PerConn: int(perConn % (2 * maxSized)), Budget: NewBudget(int64(budget % (4 * maxSized)))}
		src := &choppyReader{data: stream, sizes: sizes}
		fr := NewReader(src, sized{})
		fr.SetLimits(l)
		src.check = func() { checkHolding(t, fr) }

		var got [][]byte
		var err error
		for {
			var frame []byte
			if frame, err = fr.Next(); err != nil {
				break
			}
			got = append(got, frame)
		}
		checkFrames(t, got, want)
		checkEnd(t, err, len(got), want, tail, splitErr, l.PerConn)
		checkHolding(t, fr)
		fr.Release()
		if n := l.Budget.InUse(); n != 0 {
			t.Fatalf("%d bytes of the budget still taken after Release", n)
		}
	})
}

// maxSized is the largest frame sized accepts.
const maxSized = 1 << 20

// sized frames a stream as a 4-byte big-endian length and that many
// bytes, so a peer can declare a length it never sends. (The toy codec
// does the same, but imports this package.)
type sized struct{ testutil.Lines }

func (sized) Split(b []byte) (codec.Split, error) {
	if len(b) < 4 {
		return codec.Split{Need: 4 - len(b)}, nil
	}
	n := int(binary.BigEndian.Uint32(b))
	if n > maxSized {
		return codec.Split{}, codec.ErrTooLarge
	}
	if len(b) < 4+n {
		return codec.Split{Need: 4 + n - len(b)}, nil
	}
	return codec.Split{Len: 4 + n}, nil
}

// readerSeeds are frames of sizes around the reader's chunk, one by
// one and as a stream, whole and cut short.
func readerSeeds() [][]byte {
	var seeds [][]byte
	var stream []byte
	for i, size := range []int{10, 5000, 20000, 3, 1, 16000} {
		fr := binary.BigEndian.AppendUint32(nil, uint32(size))
		fr = append(fr, bytes.Repeat([]byte{byte(i)}, size)...)
		seeds = append(seeds, fr)
		stream = append(stream, fr...)
	}
	return append(seeds, stream, stream[:len(stream)-7])
}

// splitAll is the oracle: the frames the codec finds in the whole
// stream, the bytes left after them, and the codec's error if one stopped
// it.
func splitAll(stream []byte) (frames [][]byte, tail int, err error) {
	rest := stream
	for len(rest) > 0 {
		sp, err := codec.SafeSplit(sized{}, rest)
		if err != nil {
			return frames, len(rest), err
		}
		if sp.Len == 0 {
			break
		}
		frames = append(frames, rest[:sp.Len])
		rest = rest[sp.Len:]
	}
	return frames, len(rest), nil
}

// checkFrames: every frame returned is the codec's frame at its place,
// read after all later reads were done.
func checkFrames(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) > len(want) {
		t.Fatalf("%d frames, but the stream holds %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d of %d is not the codec's frame after later reads", i, len(got))
		}
	}
}

// checkEnd: the reader stopped early only for a limit it states, and
// otherwise at the end of the stream or at the codec's error.
func checkEnd(t *testing.T, err error, n int, want [][]byte, tail int, splitErr error, perConn int) {
	t.Helper()
	switch {
	case errors.Is(err, ErrConnLimit):
		if perConn == 0 || n == len(want) && tail == 0 {
			t.Fatalf("%v with limit %d after %d of %d frames", err, perConn, n, len(want))
		}
		if n < len(want) && len(want[n]) <= perConn {
			t.Fatalf("frame %d of %d bytes refused under a limit of %d", n, len(want[n]), perConn)
		}
	case errors.Is(err, ErrOverBudget):
		if n < len(want) && len(want[n]) <= chunk {
			t.Fatalf("a frame of %d bytes, within the first buffer, refused for the budget", len(want[n]))
		}
	case n < len(want):
		t.Fatalf("stopped after %d of %d frames: %v", n, len(want), err)
	case splitErr != nil:
		if err != splitErr && err.Error() != splitErr.Error() {
			t.Fatalf("ended with %v, want the codec's %v", err, splitErr)
		}
	case tail == 0 && err != io.EOF:
		t.Fatalf("ended with %v on a frame boundary, want io.EOF", err)
	case tail > 0 && err != io.ErrUnexpectedEOF:
		t.Fatalf("ended with %v inside a frame, want io.ErrUnexpectedEOF", err)
	}
}

// checkHolding: the buffer grows with bytes received, never to a length a
// peer only declared (at most twice what it holds, or one chunk), and what
// the reader takes from the budget is what its buffer has past the first
// chunk, within the budget's limit.
func checkHolding(t *testing.T, fr *Reader) {
	t.Helper()
	if bound := max(chunk, 2*fr.end); len(fr.buf) > bound {
		t.Fatalf("a buffer of %d bytes holding %d, want at most %d", len(fr.buf), fr.end, bound)
	}
	if l := fr.limits.PerConn; l > 0 && len(fr.buf) > max(chunk, l) {
		t.Fatalf("a buffer of %d bytes under a limit of %d", len(fr.buf), l)
	}
	b := fr.limits.Budget
	if b.InUse() != int64(fr.held) || fr.held > max(len(fr.buf)-chunk, 0) {
		t.Fatalf("the budget has %d taken, the reader holds %d past the first chunk of %d", b.InUse(), fr.held, len(fr.buf))
	}
	if b.Limit() > 0 && b.InUse() > b.Limit() {
		t.Fatalf("%d bytes taken of a budget of %d", b.InUse(), b.Limit())
	}
}

// choppyReader returns data in reads of the given sizes, in turn, and
// runs check before each read.
type choppyReader struct {
	data  []byte
	sizes []byte
	next  int
	check func()
}

func (r *choppyReader) Read(p []byte) (int, error) {
	if r.check != nil {
		r.check()
	}
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if len(r.sizes) > 0 {
		n = min(n, int(r.sizes[r.next%len(r.sizes)])*97+1)
		r.next++
	}
	n = copy(p, r.data[:min(n, len(r.data))])
	r.data = r.data[n:]
	return n, nil
}
