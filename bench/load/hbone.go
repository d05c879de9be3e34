package load

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// HBONEDialer connects to an HBONE port as ztunnel does: one HTTP/2
// connection over mutual TLS with cfg (the caller's Istio client config;
// the dialer sets HBONE's ALPN, h2), on which HBONEConn.Connect opens
// CONNECT streams. The command supplies it (from pkg/hbone/hbonetest), as
// it supplies the Identity.
type HBONEDialer func(addr string, cfg *tls.Config) (HBONEConn, error)

// HBONEConn is one HTTP/2 connection to an HBONE port.
type HBONEConn interface {
	// Connect opens a CONNECT stream to authority ("ip:port") and returns
	// it as the caller's end of a connection; a status other than 200 is
	// an error. The stream may not support deadlines: the drivers' clients
	// set none.
	Connect(authority string) (net.Conn, error)
	// Close ends the connection and its streams.
	Close() error
}

// hboneClients makes the clients of an HBONE row: each client's
// connection is a CONNECT stream to authority on the proxy's HBONE port,
// with the caller's identity. With shared, every stream of the row goes
// on one HTTP/2 connection, opened with the first and kept until the row
// ends, as ztunnel pools a caller's streams to one waypoint (one
// connection per source and destination workload, up to 100 streams);
// otherwise each stream has an HTTP/2 connection of its own, closed with
// it.
type hboneClients struct {
	dial      HBONEDialer
	addr      string // the proxy's HBONE port
	authority string // the destination the streams CONNECT to
	cfg       *tls.Config
	shared    bool

	mu   sync.Mutex
	conn HBONEConn // the shared connection, once opened
}

// client opens one client's stream and hands it to d.
func (h *hboneClients) client(d ConnDriver, payload int) (Client, error) {
	conn, err := h.connection()
	if err != nil {
		return nil, err
	}
	nc, err := conn.Connect(h.authority)
	if err != nil {
		if !h.shared {
			conn.Close()
		}
		return nil, err
	}
	if !h.shared {
		nc = &ownStream{Conn: nc, h2: conn}
	}
	return d.DialConn(nc, payload)
}

// connection is the shared HTTP/2 connection, opened on first use, or a
// new one when the streams do not share.
func (h *hboneClients) connection() (HBONEConn, error) {
	if !h.shared {
		return h.dial(h.addr, h.cfg)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn == nil {
		c, err := h.dial(h.addr, h.cfg)
		if err != nil {
			return nil, err
		}
		h.conn = c
	}
	return h.conn, nil
}

// close ends the shared connection.
func (h *hboneClients) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil {
		h.conn.Close()
		h.conn = nil
	}
}

// ownStream is a stream on an HTTP/2 connection of its own: closing it
// closes the connection too.
type ownStream struct {
	net.Conn
	h2 HBONEConn
}

func (s *ownStream) Close() error {
	err := s.Conn.Close()
	return errors.Join(err, s.h2.Close())
}

// dialHBONE is an HBONE row's dialling: clients whose connections are
// CONNECT streams, with the caller's identity, to the target's HBONE port
// and the address of its listener (which lists that address in its
// authorities). The shared HTTP/2 connection is closed when the target
// stops.
func (m *mesh) dialHBONE(d ConnDriver, dial HBONEDialer, shared bool) func(t *target) func(int) (Client, error) {
	return func(t *target) func(int) (Client, error) {
		h := &hboneClients{dial: dial, addr: t.hbone, authority: t.addr, cfg: m.caller(proxyID), shared: shared}
		t.cleanup = append(t.cleanup, h.close)
		return func(payload int) (Client, error) { return h.client(d, payload) }
	}
}

// servedOverHBONE checks, after the fixed-rate run, that the proxy served
// the row's streams over HBONE: at least conns streams accepted and, when
// they share, one HTTP/2 connection open.
func servedOverHBONE(conns int, shared bool) func(*target) error {
	return func(t *target) error {
		m, err := scrape(t)
		if err != nil {
			return err
		}
		streams, ok := metricValue(m, "rosetta_hbone_streams_accepted_total")
		if !ok || streams < float64(conns) {
			return fmt.Errorf("the proxy accepted %v HBONE streams; want at least %d", streams, conns)
		}
		if open, _ := metricValue(m, "rosetta_hbone_connections_active"); shared && open != 1 {
			return fmt.Errorf("the proxy has %v HBONE connections open; want the one the streams share", open)
		}
		return nil
	}
}

// scrape reads the proxy's metrics.
func scrape(t *target) (string, error) {
	resp, err := http.Get("http://" + t.admin + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// metricValue is the value of an unlabelled series in a Prometheus text
// exposition.
func metricValue(exposition, name string) (float64, bool) {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}
