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
	// (SETTINGS_MAX_HEADER_LIST_SIZE, counted as HPACK does: each field's
	// name and value and 32 bytes); a longer one is answered 431.
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
	// (HTTP/2 flow control, advertised in SETTINGS_INITIAL_WINDOW_SIZE and
	// the connection's first WINDOW_UPDATE): what one connection can make
	// the proxy hold. What the proxy reads is credited back once half a
	// window is read; a caller that sends past a window is refused with
	// FLOW_CONTROL_ERROR.
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

// withDefaults fills what l leaves zero from DefaultLimits (the timeouts
// excepted: zero means none) and raises the windows to HTTP/2's initial
// 65535 bytes: a peer may send that much before it reads the server's
// SETTINGS.
func (l Limits) withDefaults() Limits {
	def := DefaultLimits()
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = def.MaxConcurrentStreams
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = def.MaxHeaderBytes
	}
	if l.StreamWindow == 0 {
		l.StreamWindow = def.StreamWindow
	}
	if l.ConnectionWindow == 0 {
		l.ConnectionWindow = def.ConnectionWindow
	}
	l.StreamWindow = max(l.StreamWindow, initialWindow)
	l.ConnectionWindow = max(l.ConnectionWindow, initialWindow)
	return l
}

// HTTP/2's defaults (RFC 9113 6.5.2, 6.9.2) and bounds.
const (
	initialWindow    = 65535
	defaultFrameSize = 16 << 10
	maxWindow        = 1<<31 - 1
	// maxHeaderTable is the HPACK table the server decodes with
	// (SETTINGS_HEADER_TABLE_SIZE, left at its default).
	maxHeaderTable = 4096
)

// Sizes of a connection's writing. writeChunk is the most one Write frames
// and encrypts while it holds the connection (a larger one lets the other
// streams' writes in between); maxInlineWrite is the largest write
// Stream.WouldWait lets the proxy make on its answering goroutine (an
// event loop's), as netloop's TLS connections do; maxSocketBacklog is how
// much may wait for a caller whose socket is full before writes wait for
// it.
const (
	writeChunk       = 64 << 10
	maxInlineWrite   = 256 << 10
	maxSocketBacklog = 1 << 20
)

// goAwayLinger is how long a connection ended with GOAWAY waits for the
// peer to read it and hang up before it is closed: closed at once, unread
// bytes would make the kernel reset it, and the peer might lose the GOAWAY.
const goAwayLinger = time.Second
