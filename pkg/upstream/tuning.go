package upstream

import "time"

// The pools' tuning, in one place; docs/benchmarks.md#tuning-constants has
// a row for each, named as here.

// Default limits, Envoy's circuit-breaker defaults.
const (
	DefaultMaxConnections = 1024
	DefaultMaxRequests    = 1024
	DefaultMaxPending     = 1024
	DefaultMaxRetries     = 3
	DefaultConnectTimeout = 5 * time.Second
)

// DrainTime bounds how long the requests in flight to an endpoint that a
// config update removed may still take before its connections close under
// them: as long as the proxy lets a removed listener's requests finish. A
// removed endpoint's connections close sooner, each once it is idle.
const DrainTime = 30 * time.Second

const (
	// perConnTarget is how many requests in flight a connection carries
	// before the pool opens another one (within the cluster's connection
	// limit): filling connections in turn keeps many requests in each
	// write.
	perConnTarget = 128
	// maxWriteBuffer bounds what may queue for a slow upstream before the
	// connection is given up; writeTimeout bounds one write to it.
	maxWriteBuffer = 64 << 20
	writeTimeout   = 10 * time.Second
	// vnodes is the ring points per endpoint by default; maxRingSize
	// bounds a configured ring.
	vnodes      = 128
	maxRingSize = 1 << 20
)
