package proxy

import (
	"sync"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
	"github.com/rosetta-mesh/rosetta/pkg/upstream"
)

// stream ties a client's stream to the upstream connection its opening
// request went to: every later frame of the stream goes there, under the ID
// the opening request carried upstream. A stream ends when both sides have
// sent their last frame, or either side resets it.
type stream struct {
	dc   *downConn
	open *codec.Message // the opening request, for a reset reply
	conn *upstream.Conn
	upID uint64

	mu           sync.Mutex
	last         *codec.Message // the client's latest stream frame, to build a reset upstream
	clientDone   bool
	upstreamDone bool
}

// openStream records a stream whose opening request was answered OK and
// relays the server's frames of it to the client.
func (dc *downConn) openStream(req *codec.Message, conn *upstream.Conn, upID uint64) {
	s := &stream{dc: dc, open: req, conn: conn, upID: upID}
	dc.streamsMu.Lock()
	if dc.streams == nil {
		dc.streams = map[uint64]*stream{}
	}
	dc.streams[req.ID] = s
	dc.streamsMu.Unlock()
	if err := conn.Bind(upID, s); err != nil {
		dc.dropStream(req.ID)
	}
}

func (dc *downConn) dropStream(id uint64) {
	dc.streamsMu.Lock()
	delete(dc.streams, id)
	dc.streamsMu.Unlock()
}

// ended records a last frame from one side and reports whether the stream
// is over: both sides done, or a reset.
func (s *stream) ended(fromClient bool, m *codec.Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fromClient {
		s.last = m
		s.clientDone = s.clientDone || m.EndStream
	} else {
		s.upstreamDone = s.upstreamDone || m.EndStream
	}
	reset := m.EndStream && m.Status != codec.StatusOK
	return reset || (s.clientDone && s.upstreamDone)
}

// Done relays a server's stream frame to the client; an upstream failure
// ends the stream with the codec's reset.
func (s *stream) Done(m *codec.Message, err error, b *netloop.Round) {
	if err != nil {
		s.dc.dropStream(s.open.ID)
		s.dc.reply(nil, s.open, codec.StatusUpstreamReset, "rosetta: the upstream connection of the stream closed", b)
		return
	}
	if s.ended(false, m) {
		s.dc.dropStream(s.open.ID)
	}
	m.ID = s.open.ID
	s.dc.respond(nil, m, b)
}

// forwardStream sends a client's stream frame on its stream's upstream
// connection; a frame of no open stream gets the codec's reply for it.
func (dc *downConn) forwardStream(m *codec.Message) {
	dc.streamsMu.Lock()
	s := dc.streams[m.ID]
	dc.streamsMu.Unlock()
	if s == nil {
		dc.reply(nil, m, codec.StatusBadRequest, "rosetta: no open stream with this id", nil)
		return
	}
	if s.ended(true, m) {
		dc.dropStream(m.ID)
	}
	if err := s.conn.SendAs(m, s.upID); err != nil {
		dc.dropStream(m.ID)
		dc.reply(nil, s.open, codec.StatusUpstreamReset, "rosetta: "+err.Error(), nil)
	}
}

// resetStreams ends every open stream of a client that went away: the
// server gets the codec's reset for it and forgets it.
func (dc *downConn) resetStreams() {
	dc.streamsMu.Lock()
	streams := dc.streams
	dc.streams = nil
	dc.streamsMu.Unlock()
	for _, s := range streams {
		s.mu.Lock()
		last := s.last
		s.mu.Unlock()
		s.conn.Cancel(s.upID)
		if last == nil {
			last = s.open
		}
		rep, err := codec.SafeReply(dc.codec, last, codec.StatusUpstreamReset, "rosetta: the client went away")
		if err == nil && rep != nil && rep.Kind == codec.KindStream {
			_ = s.conn.SendAs(rep, s.upID)
		}
	}
}
