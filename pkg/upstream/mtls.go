package upstream

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
)

// clientTLS is how the proxy secures its connections to one endpoint: nil
// for plaintext. key tells two settings apart, so an endpoint reached with
// and without TLS (or with other names) has pools of each.
type clientTLS struct {
	config *tls.Config
	key    string
}

// transportPicker chooses each endpoint's transport, as Envoy does: the
// first transport_socket_matches entry whose match fields all equal the
// endpoint's envoy.transport_socket_match metadata, else the cluster's
// transport_socket (Istio's auto-mTLS sends sidecar endpoints, labelled
// tlsMode=istio, TLS and the rest plaintext).
type transportPicker struct {
	matches []socketMatch
	def     *clientTLS
}

type socketMatch struct {
	fields map[string]string
	tls    *clientTLS
}

func (m *Manager) transports(c *clusterv3.Cluster) (*transportPicker, error) {
	tp := &transportPicker{}
	var err error
	if tp.def, err = m.clientTLS(c.GetTransportSocket()); err != nil {
		return nil, err
	}
	for i, tm := range c.GetTransportSocketMatches() {
		t, err := m.clientTLS(tm.GetTransportSocket())
		if err != nil {
			return nil, fmt.Errorf("transport_socket_matches[%d].%w", i, err)
		}
		fields := map[string]string{}
		for k, v := range tm.GetMatch().GetFields() {
			fields[k] = v.GetStringValue()
		}
		tp.matches = append(tp.matches, socketMatch{fields: fields, tls: t})
	}
	return tp, nil
}

func (m *Manager) clientTLS(ts *corev3.TransportSocket) (*clientTLS, error) {
	ctx, err := config.UpstreamTLS(ts)
	if ctx == nil || err != nil {
		return nil, err
	}
	if m.identity == nil {
		return nil, fmt.Errorf("transport_socket: %w", config.ErrNoIdentity)
	}
	sans, _ := config.URISANs(ctx.GetCommonTlsContext()) // checked by UpstreamTLS
	return &clientTLS{
		config: identity.ClientConfig(m.identity, sans, ctx.GetSni()),
		key:    "mtls|" + ctx.GetSni() + "|" + strings.Join(sans, ","),
	}, nil
}

// pick is the transport of one endpoint.
func (tp *transportPicker) pick(lb *endpointv3.LbEndpoint) *clientTLS {
	meta := lb.GetMetadata().GetFilterMetadata()[config.TransportSocketMatchKey].GetFields()
	for _, sm := range tp.matches {
		if matchesAll(sm.fields, func(k string) (string, bool) {
			v, ok := meta[k]
			return v.GetStringValue(), ok
		}) {
			return sm.tls
		}
	}
	return tp.def
}

func matchesAll(want map[string]string, get func(string) (string, bool)) bool {
	for k, v := range want {
		if got, ok := get(k); !ok || got != v {
			return false
		}
	}
	return true
}

// endpointKey names an endpoint: its address, and its TLS settings when it
// has them.
func endpointKey(addr string, t *clientTLS) string {
	if t == nil {
		return addr
	}
	return addr + "|" + t.key
}

// handshake secures a new upstream connection; it must finish within
// timeout (the cluster's connect timeout), as the dial had to.
func (t *clientTLS) handshake(nc net.Conn, timeout time.Duration) (net.Conn, error) {
	tc := netloop.TLSClient(nc, t.config)
	_ = nc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	_ = nc.SetDeadline(time.Time{})
	return tc, nil
}

// TLS is how the proxy secures connections to the endpoint, for a client
// that makes its own (the rate limit service's gRPC client): a copy of the
// config, nil for plaintext, and a key that tells two settings apart.
func (e *Endpoint) TLS() (*tls.Config, string) {
	if e.tls == nil {
		return nil, ""
	}
	return e.tls.config.Clone(), e.tls.key
}
