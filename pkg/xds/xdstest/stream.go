package xdstest

import (
	"context"
	"crypto/tls"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// Listeners asks a controller for listeners on one ADS
// (state-of-the-world) stream, as a proxy that proves nothing but what
// tlsCfg and md carry: it connects to addr with tlsCfg, sends md (an
// "authorization" header, say) when the stream opens, asks as node id
// claiming namespace ns, and returns the listener names of the first
// response, or the error that ended the stream (a refusal's gRPC status;
// Unavailable when the TLS handshake failed). It gives up after 10 s.
func Listeners(addr string, tlsCfg *tls.Config, md metadata.MD, id, ns string) ([]string, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if md != nil {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	meta, err := structpb.NewStruct(map[string]any{"namespace": ns})
	if err != nil {
		return nil, err
	}
	// A refused stream may be gone before the request is sent; Recv then
	// reports why, so Send's error is not the one to return.
	_ = stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: config.ListenerType, Node: &corev3.Node{Id: id, Metadata: meta}})
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, r := range resp.GetResources() {
		var l listenerv3.Listener
		if err := r.UnmarshalTo(&l); err != nil {
			return nil, err
		}
		names = append(names, l.GetName())
	}
	return names, nil
}

// Presenting is a TLS client config that presents the certificate certPEM
// with its key (none when certPEM is nil), even when the server asks for
// other CAs, as an attacker would, and does not check the server: it is
// for tests of what a server refuses.
func Presenting(certPEM, keyPEM []byte) (*tls.Config, error) {
	cfg := &tls.Config{InsecureSkipVerify: true}
	if certPEM == nil {
		return cfg, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return cfg, nil
}
