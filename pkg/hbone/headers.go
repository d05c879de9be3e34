package hbone

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// onHeaders takes a header block: a new stream's is a request, answered
// here. A refusal ends only its stream: the
// connection keeps serving the others.
func (c *conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	c.mu.Lock()
	s := c.streams[id]
	switch {
	case s != nil:
		c.mu.Unlock()
		return c.onTrailers(s)
	case id%2 == 0:
		c.mu.Unlock()
		return connError{http2.ErrCodeProtocol, fmt.Sprintf("HEADERS on even stream %d", id)}
	case id <= c.maxSeen:
		c.mu.Unlock()
		return connError{http2.ErrCodeStreamClosed, fmt.Sprintf("HEADERS on closed stream %d", id)}
	}
	c.maxSeen = id
	// Streams the caller reset count until the proxy has closed them, up
	// to twice the maximum: a caller that opens and resets streams in a
	// loop cannot make the proxy hold more.
	maxStreams := int(c.lim.MaxConcurrentStreams)
	refused := c.goingAway || len(c.streams) >= maxStreams || c.serving >= 2*maxStreams
	c.mu.Unlock()
	if refused {
		c.refuse(id, http2.ErrCodeRefusedStream)
		return nil
	}
	if f.Truncated {
		// Over MaxHeaderBytes, as net/http's HTTP/2 server answers it.
		c.answer(id, http.StatusRequestHeaderFieldsTooLarge, f.StreamEnded())
		return nil
	}
	authority, ok := connectRequest(f)
	if !ok {
		c.refuse(id, http2.ErrCodeProtocol)
		return nil
	}
	if f.PseudoValue("method") != http.MethodConnect {
		c.srv.Metrics.refused.WithLabelValues(RefusedMethod).Inc()
		c.answer(id, http.StatusMethodNotAllowed, f.StreamEnded(), hpack.HeaderField{Name: "allow", Value: http.MethodConnect})
		return nil
	}
	dest, err := config.ParseAuthority(authority)
	if err != nil {
		c.srv.Metrics.refused.WithLabelValues(RefusedBadAuthority).Inc()
		c.answer(id, http.StatusBadRequest, f.StreamEnded())
		return nil
	}
	r := Request{Destination: dest, Principal: c.peer.principal, Remote: c.peer.remote, Source: forwardedFor(f)}
	serve, reason := c.srv.Open(r)
	if serve == nil {
		// 503 for a destination no listener serves, as Istio's HBONE
		// terminators answer a CONNECT they cannot take to a destination:
		// ztunnel's inbound answers 503 when it cannot resolve the target,
		// and an Envoy waypoint's CONNECT route goes to its main_internal
		// listener, which has no filter chain for such a destination, so
		// the router's upstream fails, which it answers with 503.
		c.srv.Metrics.refused.WithLabelValues(reason).Inc()
		c.answer(id, http.StatusServiceUnavailable, f.StreamEnded())
		return nil
	}
	c.accept(id, r, f.StreamEnded(), serve)
	return nil
}

// connectRequest checks a request's header block as RFC 9113 8.3 and 8.5
// have it (the framer checked the fields' names and values, and that
// pseudo-header fields come first, once each): a CONNECT has :method and
// :authority and neither :scheme nor :path; another method has :scheme
// and :path (it is answered 405). Extended CONNECT (:protocol, RFC 8441)
// is not offered, and no connection-specific field is allowed. It returns
// the :authority.
func connectRequest(f *http2.MetaHeadersFrame) (string, bool) {
	var method, authority, scheme, path string
	var hasAuthority, hasScheme, hasPath bool
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":authority":
			authority, hasAuthority = hf.Value, true
		case ":scheme":
			scheme, hasScheme = hf.Value, true
		case ":path":
			path, hasPath = hf.Value, true
		default: // :protocol, or a response's :status
			return "", false
		}
	}
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			return "", false
		case "te":
			if hf.Value != "trailers" {
				return "", false
			}
		}
	}
	switch {
	case method == "":
		return "", false
	case method == http.MethodConnect:
		return authority, hasAuthority && authority != "" && !hasScheme && !hasPath
	default:
		return authority, scheme != "" && path != ""
	}
}

// forwardedFor is the address the for= parameter of the first Forwarded
// header's first element names (RFC 7239: the original client, which is
// where ztunnel names the client it tunnels for); invalid when there is
// none, or it is obfuscated ("unknown", "_hidden") or not an address. The
// value may be quoted and carry a port; an IPv6 address is in brackets.
func forwardedFor(f *http2.MetaHeadersFrame) netip.Addr {
	for _, hf := range f.RegularFields() {
		if hf.Name == "forwarded" {
			return forwardedAddr(hf.Value)
		}
	}
	return netip.Addr{}
}

func forwardedAddr(v string) netip.Addr {
	first, _, _ := strings.Cut(v, ",")
	for pair := range strings.SplitSeq(first, ";") {
		k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || !strings.EqualFold(k, "for") {
			continue
		}
		val = strings.Trim(val, `"`)
		if ap, err := netip.ParseAddrPort(val); err == nil && ap.Addr().Zone() == "" {
			return ap.Addr().Unmap()
		}
		if inner, ok := strings.CutPrefix(val, "["); ok {
			if val, ok = strings.CutSuffix(inner, "]"); !ok {
				return netip.Addr{}
			}
		}
		if a, err := netip.ParseAddr(val); err == nil && a.Zone() == "" {
			return a.Unmap()
		}
		return netip.Addr{}
	}
	return netip.Addr{}
}

// onTrailers takes a header block on an open stream, which a CONNECT
// stream must not carry (RFC 9113 8.5): the stream is reset.
func (c *conn) onTrailers(s *Stream) error {
	code := http2.ErrCodeProtocol
	if s.remoteEnded.Load() {
		code = http2.ErrCodeStreamClosed
	}
	c.reset(s, code, errPeerProtocol)
	return nil
}

// answer refuses a request with status, ending the stream: when the
// caller's side is still open, RST_STREAM NO_ERROR tells it to stop
// sending (RFC 9113 8.1).
func (c *conn) answer(id uint32, status int, peerEnded bool, fields ...hpack.HeaderField) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.writeHeadersLocked(id, status, true, fields...)
	if !peerEnded {
		_ = c.wfr.WriteRSTStream(id, http2.ErrCodeNo)
	}
	_ = c.flushLocked()
}

func (c *conn) writeHeadersLocked(id uint32, status int, end bool, fields ...hpack.HeaderField) {
	c.hbuf.Reset()
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
	for _, hf := range fields {
		_ = c.henc.WriteField(hf)
	}
	_ = c.wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true, EndStream: end})
}
