package xds

import (
	"google.golang.org/grpc/mem"
)

// ResponseBuffers is a gRPC buffer pool for a process that serves xDS:
// the controller makes it gRPC's default (experimental.SetDefaultBufferPool),
// the pool gRPC's proto codec marshals every message into. gRPC's own
// default has no size between 32 KiB and 1 MiB, so a 40 KiB response (a
// scope's clusters, a proxy's first endpoints) takes a zeroed 1 MiB
// buffer, held until the proxy has read it: when a thousand proxies sync
// at once, that alone is hundreds of MB of heap. A tier at every power of
// two holds a response in at most twice its size.
func ResponseBuffers() mem.BufferPool { return responseBuffers }

var responseBuffers = func() mem.BufferPool {
	p, err := mem.NewBinaryTieredBufferPool(8, 12, 14, 15, 16, 17, 18, 19, 20)
	if err != nil {
		panic(err) // constant exponents, each a size a slice can have
	}
	return p
}()
