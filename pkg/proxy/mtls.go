package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/authz"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
)

// recordTypeHandshake is the first byte of every TLS connection (a
// handshake record). None of the protocols served here starts with it:
// Dubbo sends 0xda, tRPC 0x09, Thrift a length or 0x80/0x82, Redis '*'.
const recordTypeHandshake = 0x16

// transports reads what a listener's filter chains accept: TLS, plaintext or
// both (Istio's PERMISSIVE, a chain for each transport_protocol). Every
// chain must carry the same MetaProtocol filter: a listener serves one
// protocol and one route table, whatever the transport. secure is the TLS
// context of the first TLS chain (at index at), nil when none is. A
// listener's own certificate must be every TLS chain's context (Istio's
// chains all mean the workload identity, whatever else they say).
func transports(l *listenerv3.Listener, mp *configv1alpha1.MetaProtocolProxy) (secure *tlsv3.DownstreamTlsContext, at int, plain bool, err error) {
	for i, fc := range l.GetFilterChains() {
		ctx, err := config.DownstreamTLS(fc.GetTransportSocket())
		if err != nil {
			return nil, 0, false, fmt.Errorf("filter_chains[%d].%w", i, err)
		}
		switch tp := fc.GetFilterChainMatch().GetTransportProtocol(); {
		case ctx != nil && (tp == "" || tp == config.TransportTLS):
			if secure != nil && !(config.UsesWorkloadCertificate(ctx) && config.UsesWorkloadCertificate(secure)) && !proto.Equal(ctx, secure) {
				return nil, 0, false, fmt.Errorf("filter_chains[%d].transport_socket: must equal filter_chains[%d]'s (one TLS setting per listener)", i, at)
			}
			if secure == nil {
				secure, at = ctx, i
			}
		case ctx == nil && (tp == "" || tp == config.TransportRaw):
			plain = true
		default:
			return nil, 0, false, fmt.Errorf("filter_chains[%d].filter_chain_match.transport_protocol: %q does not fit the chain's transport socket", i, tp)
		}
		if !sameFilter(fc, mp) {
			return nil, 0, false, fmt.Errorf("filter_chains[%d]: its %s filter must equal the first chain's (one protocol and route table per listener)", i, config.FilterName)
		}
	}
	return secure, at, plain, nil
}

func sameFilter(fc *listenerv3.FilterChain, mp *configv1alpha1.MetaProtocolProxy) bool {
	for _, f := range fc.GetFilters() {
		if f.GetName() != config.FilterName {
			continue
		}
		other := &configv1alpha1.MetaProtocolProxy{}
		return f.GetTypedConfig().UnmarshalTo(other) == nil && proto.Equal(other, mp)
	}
	return false
}

// compileSecurity sets lc's transport and authorization from the listener;
// a listener's own certificate comes from secrets.
func compileSecurity(lc *listenerConfig, l *listenerv3.Listener, mp *configv1alpha1.MetaProtocolProxy, secrets *secretSet, id *identity.Workload) error {
	ctx, at, plain, err := transports(l, mp)
	if err != nil {
		return err
	}
	if ctx != nil {
		own, err := config.ReadListenerCertificate(ctx, secrets.byName)
		switch {
		case err != nil:
			return fmt.Errorf("filter_chains[%d].transport_socket: %w", at, err)
		case own != nil && lc.addr == "":
			// HBONE streams come decrypted from the tunnel: the
			// certificate would never be presented.
			return fmt.Errorf("filter_chains[%d].transport_socket: a listener's own certificate needs address.socket_address (a listener reached only through HBONE terminates no TLS of its own)", at)
		case own != nil:
			lc.tls = ownServerConfig(own)
			lc.ownTLS = true
		case id == nil:
			return fmt.Errorf("filter_chains: %w", config.ErrNoIdentity)
		default:
			lc.tls = identity.ServerConfig(id)
		}
		lc.plaintext = plain
	}
	if lc.authz, err = authz.Compile(mp.GetAuthorization()); err != nil {
		return fmt.Errorf("filter %s: %w", config.FilterName, err)
	}
	return nil
}

// ownServerConfig is the TLS config of a listener with its own certificate
// (an Istio Gateway server's SIMPLE or MUTUAL mode): TLS 1.2 or later, the
// certificate of the config in force, and with client CAs a client
// certificate verified against them (required for MUTUAL). No ALPN: the
// protocols served here do not negotiate one. An update makes a new config,
// so new handshakes take a rotated certificate and open connections keep
// the one they have.
func ownServerConfig(own *config.ListenerCertificate) *tls.Config {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{own.Certificate},
	}
	if own.ClientCAs != nil {
		cfg.ClientCAs = own.ClientCAs
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if own.RequireClientCertificate {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		// A resumed session would skip checking the client's chain
		// against the CA of the day, as in identity.ServerConfig.
		cfg.SessionTicketsDisabled = true
	}
	return cfg
}

// ownTLSPrincipal is what authorization knows of a client of a listener
// with its own certificate: the SPIFFE URI SAN of its verified certificate
// without "spiffe://" (Istio's principal form, "TD/ns/NS/sa/SA" for a mesh
// identity), or "" when the client sent no certificate, or one without a
// SPIFFE URI SAN: such a client has no principal and no namespace, so no
// policy that names principals or namespaces matches it.
func ownTLSPrincipal(cs tls.ConnectionState) string {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	for _, u := range cs.VerifiedChains[0][0].URIs {
		if u.Scheme == "spiffe" && u.Host != "" {
			return u.Host + u.EscapedPath()
		}
	}
	return ""
}

// secure runs a new connection's TLS handshake (after telling TLS from
// plaintext on a PERMISSIVE listener) on a goroutine of its own, so a slow
// client never holds up the accept loop, then serves it.
func (l *listener) secure(nc net.Conn, lc *listenerConfig) {
	defer l.handshaking.Add(-1)
	_ = nc.SetDeadline(time.Now().Add(handshakeTimeout))
	if lc.plaintext {
		isTLS, err := startsWithTLS(nc)
		if err != nil {
			nc.Close()
			return
		}
		if !isTLS {
			_ = nc.SetDeadline(time.Time{})
			l.serveConn(nc, "", "plaintext")
			return
		}
	}
	tc := netloop.TLSServer(nc, lc.tls)
	if err := tc.Handshake(); err != nil {
		l.p.metrics.TLSHandshakeFailed(lc.statPrefix)
		l.p.log.Debug("downstream TLS handshake failed", "listener", lc.name, "remote", nc.RemoteAddr().String(), "err", err)
		nc.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	principal, transport := transportOf(lc, tc.ConnectionState())
	l.serveConn(tc, principal, transport)
}

// transportOf is a TLS connection's principal and transport label: "mtls"
// when the client's certificate was verified (always, for Istio mutual
// TLS), "tls" when it sent none to a listener with its own certificate.
func transportOf(lc *listenerConfig, cs tls.ConnectionState) (principal, transport string) {
	if !lc.ownTLS {
		if id, ok := identity.PeerID(cs); ok {
			principal = id.Principal()
		}
		return principal, "mtls"
	}
	if len(cs.VerifiedChains) == 0 {
		return "", "tls"
	}
	return ownTLSPrincipal(cs), "mtls"
}

// startsWithTLS peeks at the first byte without taking it, so a plaintext
// connection stays the kernel socket it was and can go to an event loop.
func startsWithTLS(nc net.Conn) (bool, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false, fmt.Errorf("proxy: cannot peek at a %T", nc)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false, err
	}
	var b [1]byte
	var n int
	var rerr error
	err = raw.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		return rerr != syscall.EAGAIN && rerr != syscall.EINTR
	})
	switch {
	case err != nil:
		return false, err
	case rerr != nil:
		return false, rerr
	case n == 0:
		return false, net.ErrClosed
	}
	return b[0] == recordTypeHandshake, nil
}

// peerOf is what authorization knows of a connection's caller before any
// request: its verified principal ("" for plaintext), the namespace in it,
// its address and the port it called: the listener's, or for an HBONE
// stream its destination's.
func peerOf(nc net.Conn, principal string, port uint32) authz.Request {
	if d, ok := nc.(interface{ Destination() netip.AddrPort }); ok {
		port = uint32(d.Destination().Port())
	}
	r := authz.Request{Principal: principal, Namespace: authz.NamespaceOf(principal), Port: port}
	if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
		r.Peer = ap.Addr().Unmap()
	}
	return r
}

// authorize checks req against the listener's policies in force (a policy
// edit applies to the next request of an open connection too) and counts
// what a policy decided.
func (dc *downConn) authorize(eng *authz.Engine, req *codec.Message) authz.Decision {
	r := dc.peer
	r.Attr = req.Get
	d := eng.Check(&r)
	m := dc.l.p.metrics
	switch {
	case !d.Allowed:
		m.Authorization(dc.lc.statPrefix, d.Policy, "denied")
	case d.Policy != "":
		m.Authorization(dc.lc.statPrefix, d.Policy, "allowed")
	}
	if d.Audit {
		m.Authorization(dc.lc.statPrefix, d.AuditPolicy, "audited")
	}
	return d
}
