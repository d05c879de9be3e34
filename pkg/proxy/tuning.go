package proxy

import "time"

// The proxy's own bounds, in one place; docs/benchmarks.md#tuning-constants
// has a row for each, named as here. The limits users set are
// DefaultLimits (limits.go).
const (
	// maxWriteBuffer bounds the replies queued for a client that does not
	// read; writeTimeout bounds one write to it.
	maxWriteBuffer = 64 << 20
	writeTimeout   = 10 * time.Second
	// handshakeTimeout bounds a downstream TLS handshake, and on a
	// PERMISSIVE listener the wait for the first byte that tells TLS from
	// plaintext, so a client that connects and says nothing does not hold
	// a goroutine for ever.
	handshakeTimeout = 10 * time.Second
)
