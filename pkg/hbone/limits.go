package hbone

import "time"

// Limits bound what HBONE callers can make the server hold. The streams'
// own reading (buffers, idle and frame time) is bounded by the listener
// that serves them, as a TCP connection of that listener is.
type Limits struct {
	// MaxConnections caps the HTTP/2 connections open at once, handshakes
	// included; more are closed as they are accepted. 0: no cap.
	MaxConnections int
	// MaxConcurrentStreams caps the CONNECT streams of one connection
	// (SETTINGS_MAX_CONCURRENT_STREAMS).
	MaxConcurrentStreams uint32
	// MaxHeaderBytes bounds a request's header list
	// (SETTINGS_MAX_HEADER_LIST_SIZE).
	MaxHeaderBytes int
	// HandshakeTimeout bounds the TLS handshake.
	HandshakeTimeout time.Duration
	// ReadIdleTimeout: a connection that sent no frame for this long is
	// pinged, and closed when the answer takes longer than PingTimeout.
	ReadIdleTimeout time.Duration
	PingTimeout     time.Duration
	// IdleTimeout closes a connection without streams for this long; 0:
	// never.
	IdleTimeout time.Duration
	// WriteTimeout resets a stream whose caller takes nothing of one send
	// for this long, and closes a connection whose socket takes nothing for
	// this long.
	WriteTimeout time.Duration
	// StreamWindow and ConnectionWindow are the bytes a caller may send
	// ahead of what the proxy has read, per stream and per connection
	// (HTTP/2 flow control): what one connection can make the proxy hold.
	StreamWindow     int32
	ConnectionWindow int32
}

// DefaultLimits are Istio's waypoint's settings where it has them: 100
// streams per connection, a ping after 10 s of silence answered within
// 20 s.
func DefaultLimits() Limits {
	return Limits{
		MaxConnections:       8192,
		MaxConcurrentStreams: 100,
		MaxHeaderBytes:       16 << 10,
		HandshakeTimeout:     10 * time.Second,
		ReadIdleTimeout:      10 * time.Second,
		PingTimeout:          20 * time.Second,
		IdleTimeout:          time.Hour,
		WriteTimeout:         10 * time.Second,
		StreamWindow:         256 << 10,
		ConnectionWindow:     1 << 20,
	}
}

// Sizes of a stream's buffers: readChunk is the most one read of the
// request body takes (an HTTP/2 DATA frame carries at most 16 KiB unless
// the peer raises it); maxQueued is how much Write queues before it waits
// for the caller to read.
const (
	readChunk = 16 << 10
	maxQueued = 64 << 10
)
