package xdstest

import (
	"context"
	"strconv"
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
)

// Received records what a proxy's xDS client receives, as the proxy sees
// it: add DialOption to client.Options.DialOptions. It counts the ADS
// streams the client opens (those that fail to connect included) and
// keeps the type and version of every state-of-the-world response, in
// arrival order, whether the proxy then accepts it or not.
type Received struct {
	mu        sync.Mutex
	streams   int
	responses []Response
}

// Response is one response a client received.
type Response struct {
	TypeURL string
	// Version is the response's version_info; Rosetta's controller sends
	// numbers that only increase, and VersionNumber is that number (0
	// when it is not one).
	Version       string
	VersionNumber uint64
	Resources     int
}

// DialOption is the gRPC option that records into r.
func (r *Received) DialOption() grpc.DialOption {
	return grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn,
		method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		r.mu.Lock()
		r.streams++
		r.mu.Unlock()
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &recordingStream{ClientStream: s, r: r}, nil
	})
}

type recordingStream struct {
	grpc.ClientStream
	r *Received
}

func (s *recordingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if resp, ok := m.(*discoveryv3.DiscoveryResponse); ok && err == nil {
		n, _ := strconv.ParseUint(resp.GetVersionInfo(), 10, 64)
		s.r.mu.Lock()
		s.r.responses = append(s.r.responses, Response{TypeURL: resp.GetTypeUrl(), Version: resp.GetVersionInfo(),
			VersionNumber: n, Resources: len(resp.GetResources())})
		s.r.mu.Unlock()
	}
	return err
}

// Streams is the number of ADS streams the client has tried to open.
func (r *Received) Streams() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.streams
}

// Latest is the version number of the last response of typeURL, 0 before
// the first.
func (r *Received) Latest(typeURL string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.responses) - 1; i >= 0; i-- {
		if r.responses[i].TypeURL == typeURL {
			return r.responses[i].VersionNumber
		}
	}
	return 0
}

// Since returns the version numbers of the responses of typeURL whose
// version number is at least from, in arrival order.
func (r *Received) Since(typeURL string, from uint64) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []uint64
	for _, resp := range r.responses {
		if resp.TypeURL == typeURL && resp.VersionNumber >= from {
			out = append(out, resp.VersionNumber)
		}
	}
	return out
}
