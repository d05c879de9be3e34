package wire

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Budget bounds the bytes that many Readers together hold for frames not
// yet whole, as Envoy's overload manager bounds its buffers: a peer that
// sends most of a large frame and stops makes the proxy hold it, and many
// such peers would hold without end. A Reader's first chunk is not counted:
// every connection has it, and the cap on connections bounds those.
type Budget struct {
	limit int64
	used  atomic.Int64
}

// NewBudget returns a budget of limit bytes; 0 or less is no bound.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// InUse is how many bytes are held now.
func (b *Budget) InUse() int64 { return b.used.Load() }

// Limit is the budget's size, 0 when unbounded.
func (b *Budget) Limit() int64 { return max(b.limit, 0) }

func (b *Budget) take(n int) bool {
	if b == nil {
		return true
	}
	if b.used.Add(int64(n)) > b.limit && b.limit > 0 {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

func (b *Budget) give(n int) {
	if b != nil && n > 0 {
		b.used.Add(-int64(n))
	}
}

// Errors of a Reader over its limits. Both are codec.ErrTooLarge too: the
// connection ends as after any frame too large.
var (
	// ErrConnLimit: a frame is larger than the connection may hold.
	ErrConnLimit = fmt.Errorf("wire: a frame over the connection's buffer limit: %w", codec.ErrTooLarge)
	// ErrOverBudget: holding more of a frame would pass the Budget.
	ErrOverBudget = fmt.Errorf("wire: the proxy's buffer budget for unfinished frames is spent: %w", codec.ErrTooLarge)
)

// Limits bound what one Reader holds for a frame that is not whole yet.
type Limits struct {
	// Budget, when set, is shared with other readers.
	Budget *Budget
	// PerConn is the most bytes of one frame a reader holds; 0 is
	// HardLimit.
	PerConn int
}

// LimitError is a limit's error (ErrConnLimit, ErrOverBudget, or a reader's
// frame timeout) with the first bytes of the frame it cut short, from
// which a codec may read what to answer (codec.HeadDecoder).
type LimitError struct {
	Err  error
	Head []byte
}

func (e *LimitError) Error() string { return e.Err.Error() }
func (e *LimitError) Unwrap() error { return e.Err }

// HeadOf is the head a LimitError in err's chain kept, nil when none.
func HeadOf(err error) []byte {
	var le *LimitError
	if errors.As(err, &le) {
		return le.Head
	}
	return nil
}
