package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// sized frames are a 4-byte big-endian length and that many bytes.
type sized struct{}

func (sized) Split(b []byte) (codec.Split, error) {
	if len(b) < 4 {
		return codec.Split{Need: 4 - len(b)}, nil
	}
	n := 4 + int(binary.BigEndian.Uint32(b))
	if len(b) < n {
		return codec.Split{Need: n - len(b)}, nil
	}
	return codec.Split{Len: n}, nil
}
func (sized) Decode([]byte) (*codec.Message, error)                              { return nil, nil }
func (sized) Encode(dst []byte, _ *codec.Message) ([]byte, error)                { return dst, nil }
func (sized) Reply(*codec.Message, codec.Status, string) (*codec.Message, error) { return nil, nil }

var errPaused = errors.New("the peer sends nothing more for now")

// trickle gives its bytes and then errPaused, as a peer that stops.
type trickle struct{ data []byte }

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.data) == 0 {
		return 0, errPaused
	}
	n := copy(p, t.data)
	t.data = t.data[n:]
	return n, nil
}

// partial is the first n bytes of a frame that claims size body bytes.
func partial(size, n int) []byte {
	f := binary.BigEndian.AppendUint32(nil, uint32(size))
	return append(f, bytes.Repeat([]byte("p"), n)...)
}

func TestReaderGrowsWithBytesReceivedNotClaimed(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 20 {
		fr := wire.NewReader(&trickle{data: partial(60<<20, 100)}, sized{})
		if _, err := fr.Next(); err != errPaused {
			t.Fatalf("Next = %v, want the peer's pause", err)
		}
	}
	runtime.ReadMemStats(&after)
	// 20 readers of a chunk each, not 20 frames of the 60 MiB claimed.
	if got := after.TotalAlloc - before.TotalAlloc; got > 2<<20 {
		t.Fatalf("20 headers claiming 60 MiB allocated %d bytes", got)
	}
}

func TestReaderRefusesAFrameOverItsConnectionLimit(t *testing.T) {
	fr := wire.NewReader(&trickle{data: partial(2<<20, 10)}, sized{})
	fr.SetLimits(wire.Limits{PerConn: 1 << 20})
	if _, err := fr.Next(); !errors.Is(err, wire.ErrConnLimit) || !errors.Is(err, codec.ErrTooLarge) {
		t.Fatalf("a frame of 2 MiB with a 1 MiB limit: %v", err)
	}
}

func TestReadersShareTheBudgetAndGiveItBack(t *testing.T) {
	b := wire.NewBudget(1 << 20)
	first := &trickle{data: partial(700<<10, 600<<10)}
	a := wire.NewReader(first, sized{})
	a.SetLimits(wire.Limits{Budget: b})
	if _, err := a.Next(); err != errPaused {
		t.Fatalf("first reader: %v", err)
	}
	if b.InUse() < 500<<10 {
		t.Fatalf("a reader holding 600 KiB of a frame takes %d bytes of the budget", b.InUse())
	}
	second := wire.NewReader(&trickle{data: partial(700<<10, 600<<10)}, sized{})
	second.SetLimits(wire.Limits{Budget: b})
	if _, err := second.Next(); !errors.Is(err, wire.ErrOverBudget) {
		t.Fatalf("a second 600 KiB past a 1 MiB budget: %v", err)
	}
	second.Release()
	first.data = bytes.Repeat([]byte("p"), 100<<10)
	if f, err := a.Next(); err != nil || len(f) != 4+700<<10 {
		t.Fatalf("the first frame, once whole: %d bytes, %v", len(f), err)
	}
	if b.InUse() != 0 {
		t.Fatalf("%d bytes still taken after the frame was whole", b.InUse())
	}
	first.data = partial(300<<10, 200<<10)
	if _, err := a.Next(); err != errPaused {
		t.Fatalf("the next frame: %v", err)
	}
	a.Release()
	if b.InUse() != 0 {
		t.Fatalf("%d bytes still taken after Release", b.InUse())
	}
}
