package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/authz"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
)

// handshakeTimeout bounds a downstream TLS handshake, and on a PERMISSIVE
// listener the wait for the first byte that tells TLS from plaintext, so a
// client that connects and says nothing does not hold a goroutine forever.
const handshakeTimeout = 10 * time.Second

// recordTypeHandshake is the first byte of every TLS connection (a
// handshake record). None of the protocols served here starts with it:
// Dubbo sends 0xda, tRPC 0x09, Thrift a length or 0x80/0x82, Redis '*'.
const recordTypeHandshake = 0x16

// transports reads what a listener's filter chains accept: TLS, plaintext or
// both (Istio's PERMISSIVE, a chain for each transport_protocol). Every
// chain must carry the same MetaProtocol filter: a listener serves one
// protocol and one route table, whatever the transport.
func transports(l *listenerv3.Listener, mp *configv1alpha1.MetaProtocolProxy) (secure, plain bool, err error) {
	for i, fc := range l.GetFilterChains() {
		ctx, err := config.DownstreamTLS(fc.GetTransportSocket())
		if err != nil {
			return false, false, fmt.Errorf("filter_chains[%d].%w", i, err)
		}
		switch tp := fc.GetFilterChainMatch().GetTransportProtocol(); {
		case ctx != nil && (tp == "" || tp == config.TransportTLS):
			secure = true
		case ctx == nil && (tp == "" || tp == config.TransportRaw):
			plain = true
		default:
			return false, false, fmt.Errorf("filter_chains[%d].filter_chain_match.transport_protocol: %q does not fit the chain's transport socket", i, tp)
		}
		if !sameFilter(fc, mp) {
			return false, false, fmt.Errorf("filter_chains[%d]: its %s filter must equal the first chain's (one protocol and route table per listener)", i, config.FilterName)
		}
	}
	return secure, plain, nil
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

// compileSecurity sets lc's transport and authorization from the listener.
func compileSecurity(lc *listenerConfig, l *listenerv3.Listener, mp *configv1alpha1.MetaProtocolProxy, id *identity.Workload) error {
	secure, plain, err := transports(l, mp)
	if err != nil {
		return err
	}
	if secure {
		if id == nil {
			return fmt.Errorf("filter_chains: %w", config.ErrNoIdentity)
		}
		lc.tls = identity.ServerConfig(id)
		lc.plaintext = plain
	}
	if lc.authz, err = authz.Compile(mp.GetAuthorization()); err != nil {
		return fmt.Errorf("filter %s: %w", config.FilterName, err)
	}
	return nil
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
	principal := ""
	if id, ok := identity.PeerID(tc.ConnectionState()); ok {
		principal = id.Principal()
	}
	l.serveConn(tc, principal, "mtls")
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
