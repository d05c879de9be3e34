// Package hbonetest is an HBONE client for tests, doing for a test what
// ztunnel does for a workload: one HTTP/2 connection over Istio mutual
// TLS (ALPN h2) to a waypoint's HBONE port, and a CONNECT stream on it per
// connection the workload makes, to the destination it dialled.
package hbonetest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/identity"
)

// ClientTLS is the TLS config ztunnel uses for w: w's certificate, the
// waypoint's verified against w's roots and, when given, its SPIFFE IDs
// (exact spiffe:// URIs), ALPN h2.
func ClientTLS(w *identity.Workload, waypointIDs ...string) *tls.Config {
	c := identity.ClientConfig(w, waypointIDs, "")
	c.NextProtos = []string{"h2"}
	return c
}

// Conn is one HTTP/2 connection to an HBONE port.
type Conn struct {
	*http.ClientConn
	local, remote net.Addr
}

// Dial connects to addr with cfg (ClientTLS, or another config a test
// needs); the TLS handshake is done when it returns. With TLS 1.3 a
// server that refuses the client's certificate says so after the client's
// handshake is over: the first stream then fails.
func Dial(addr string, cfg *tls.Config) (*Conn, error) {
	c := &Conn{}
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	tr := &http.Transport{
		Protocols: &protocols,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := &tls.Dialer{Config: cfg}
			nc, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Only HTTP/2 carries HBONE; net/http would fall back to HTTP/1.
			if p := nc.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "h2" {
				nc.Close()
				return nil, fmt.Errorf("hbonetest: the server negotiated ALPN %q, not h2", p)
			}
			c.local, c.remote = nc.LocalAddr(), nc.RemoteAddr()
			return nc, nil
		},
	}
	cc, err := tr.NewClientConn(context.Background(), "https", addr)
	if err != nil {
		return nil, err
	}
	c.ClientConn = cc
	return c, nil
}

// Connect opens a CONNECT stream to authority ("ip:port"). The server's
// answer is its status; only a 200 gives a Tunnel.
func (c *Conn) Connect(authority string) (*Tunnel, int, error) {
	return c.ConnectFor(authority, netip.Addr{})
}

// ConnectFor is Connect for the connection of a client at client, which
// the request names as ztunnel does: Forwarded: for=ADDRESS (RFC 7239).
// An invalid client sends no Forwarded header.
func (c *Conn) ConnectFor(authority string, client netip.Addr) (*Tunnel, int, error) {
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodConnect, "https://"+authority, pr)
	if err != nil {
		return nil, 0, err
	}
	req.Host = authority
	switch {
	case client.Is4():
		req.Header.Set("Forwarded", "for="+client.String())
	case client.IsValid():
		req.Header.Set("Forwarded", `for="[`+client.String()+`]"`)
	}
	resp, err := c.RoundTrip(req)
	if err != nil {
		pw.Close()
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		pw.Close()
		return nil, resp.StatusCode, nil
	}
	return &Tunnel{w: pw, body: resp.Body, local: c.local, remote: c.remote}, resp.StatusCode, nil
}

// Tunnel is one CONNECT stream as the caller's end of a connection. It
// has no deadlines.
type Tunnel struct {
	w             *io.PipeWriter
	body          io.ReadCloser
	local, remote net.Addr
}

var _ net.Conn = (*Tunnel)(nil)

// Read reads what the server sends on the stream.
func (t *Tunnel) Read(p []byte) (int, error) { return t.body.Read(p) }

// Write sends on the stream.
func (t *Tunnel) Write(p []byte) (int, error) { return t.w.Write(p) }

// CloseWrite ends the caller's side (END_STREAM), as a TCP half-close.
func (t *Tunnel) CloseWrite() error { return t.w.Close() }

// Reset aborts the stream (RST_STREAM CANCEL), as ztunnel does when the
// caller's connection breaks: the transport resets a stream whose request
// body fails.
func (t *Tunnel) Reset() { t.w.CloseWithError(errors.New("hbonetest: the caller went away")) }

// Close ends both sides.
func (t *Tunnel) Close() error {
	t.w.Close()
	return t.body.Close()
}

// LocalAddr is the caller's end of the HTTP/2 connection.
func (t *Tunnel) LocalAddr() net.Addr { return t.local }

// RemoteAddr is the server's end of the HTTP/2 connection.
func (t *Tunnel) RemoteAddr() net.Addr { return t.remote }

// SetDeadline is not supported.
func (t *Tunnel) SetDeadline(time.Time) error { return errors.ErrUnsupported }

// SetReadDeadline is not supported.
func (t *Tunnel) SetReadDeadline(time.Time) error { return errors.ErrUnsupported }

// SetWriteDeadline is not supported.
func (t *Tunnel) SetWriteDeadline(time.Time) error { return errors.ErrUnsupported }
