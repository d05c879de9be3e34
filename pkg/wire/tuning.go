package wire

// The reader's sizes, in one place; docs/benchmarks.md#tuning-constants
// has a row for each, named as here.
const (
	// HardLimit bounds any single frame whatever a codec says, as a second
	// guard against a codec that forgets its own limit.
	HardLimit = 64 << 20
	// chunk is a read buffer's first size; a frame that needs more grows
	// it (Reader.grow), against the budget.
	chunk = 16 << 10
	// headLen is how much of an unfinished frame a LimitError keeps:
	// enough for any protocol's header.
	headLen = 64
)
