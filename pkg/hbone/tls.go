package hbone

import "crypto/tls"

// ALPN is HBONE's TLS application protocol: HTTP/2.
const ALPN = "h2"

// ServerTLS is base (an Istio mutual TLS server config, such as
// identity.ServerConfig's: the workload certificate, a client certificate
// verified against the mesh roots) with HBONE's ALPN, "h2", in place of
// Istio's mTLS protocols. A config base returns per handshake gets the same
// change, so certificate rotation keeps working.
func ServerTLS(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.NextProtos = []string{ALPN}
	if get := base.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cc, err := get(hello)
			if err != nil || cc == nil {
				return cc, err
			}
			cc = cc.Clone()
			cc.NextProtos = []string{ALPN}
			return cc, nil
		}
	}
	return c
}
