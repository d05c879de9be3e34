package proxy

import (
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/upstream"
)

// stream ties a client's stream to the upstream connection its opening
// request went to: every later frame of the stream goes there, under the ID
// the opening request carried upstream.
type stream struct {
	dc   *downConn
	open *codec.Message // the opening request, for a reset reply
	conn *upstream.Conn
	upID uint64
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
		dc.closeStream(req.ID)
	}
}

func (dc *downConn) closeStream(id uint64) {
	dc.streamsMu.Lock()
	delete(dc.streams, id)
	dc.streamsMu.Unlock()
}

// Done relays a server's stream frame to the client; an upstream failure
// ends the stream with the codec's reset.
func (s *stream) Done(m *codec.Message, err error) {
	if err != nil {
		s.dc.closeStream(s.open.ID)
		s.dc.reply(nil, s.open, codec.StatusUpstreamReset, "rosetta: the upstream connection of the stream closed")
		return
	}
	if m.EndStream {
		s.dc.closeStream(s.open.ID)
	}
	m.ID = s.open.ID
	s.dc.respond(nil, m)
}

// forwardStream sends a client's stream frame on its stream's upstream
// connection; a frame of no open stream gets the codec's reply for it.
func (dc *downConn) forwardStream(m *codec.Message) {
	dc.streamsMu.Lock()
	s := dc.streams[m.ID]
	dc.streamsMu.Unlock()
	if s == nil {
		dc.reply(nil, m, codec.StatusBadRequest, "rosetta: no open stream with this id")
		return
	}
	if err := s.conn.SendAs(m, s.upID); err != nil {
		dc.closeStream(m.ID)
		dc.reply(nil, s.open, codec.StatusUpstreamReset, "rosetta: "+err.Error())
	}
}
