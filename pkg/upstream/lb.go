package upstream

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync/atomic"
)

// Balancer picks an endpoint for one request. hash is the request's hash key
// (used by consistent hashing only); exclude is an endpoint a retry avoids.
type Balancer interface {
	Pick(eps []*Endpoint, hash uint64, exclude *Endpoint) *Endpoint
}

// candidates returns the healthy endpoints other than exclude; when none is
// healthy it returns all but exclude (as Envoy's panic threshold does), so a
// recovered server is found without waiting for its ejection to end; and
// when exclude is the only endpoint, a retry goes to it again. Endpoints a
// later config removed are never candidates: a cluster of an older config,
// which a request that arrived before the update still uses, picks among
// those left.
func candidates(eps []*Endpoint, exclude *Endpoint, buf []*Endpoint) []*Endpoint {
	out := buf[:0]
	for _, e := range eps {
		if e != exclude && e.Healthy() { // a removed endpoint is not healthy
			out = append(out, e)
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, e := range eps {
		if e != exclude && !e.Removed() {
			out = append(out, e)
		}
	}
	if len(out) == 0 && exclude != nil && !exclude.Removed() {
		out = append(out, exclude)
	}
	return out
}

type roundRobin struct{ n atomic.Uint64 }

func (r *roundRobin) Pick(eps []*Endpoint, _ uint64, exclude *Endpoint) *Endpoint {
	var buf [16]*Endpoint
	c := candidates(eps, exclude, buf[:])
	if len(c) == 0 {
		return nil
	}
	return c[(r.n.Add(1)-1)%uint64(len(c))]
}

type random struct{}

func (random) Pick(eps []*Endpoint, _ uint64, exclude *Endpoint) *Endpoint {
	var buf [16]*Endpoint
	c := candidates(eps, exclude, buf[:])
	if len(c) == 0 {
		return nil
	}
	return c[rand.IntN(len(c))]
}

// leastRequest picks the less busy of two random endpoints (Envoy's default
// choice count of two).
type leastRequest struct{}

func (leastRequest) Pick(eps []*Endpoint, _ uint64, exclude *Endpoint) *Endpoint {
	var buf [16]*Endpoint
	c := candidates(eps, exclude, buf[:])
	switch len(c) {
	case 0:
		return nil
	case 1:
		return c[0]
	}
	a, b := c[rand.IntN(len(c))], c[rand.IntN(len(c))]
	if b.Active() < a.Active() {
		return b
	}
	return a
}

// ringHash is a consistent hash ring with virtual nodes: a request goes to the
// first healthy endpoint clockwise of its hash, so removing one endpoint moves
// only its own share of keys.
type ringHash struct {
	points    []ringPoint
	endpoints int
}

type ringPoint struct {
	hash uint64
	ep   *Endpoint
}

// newRingHash builds a ring of at least size points (vnodes per endpoint
// when size is 0).
func newRingHash(eps []*Endpoint, size int) *ringHash {
	per := vnodes
	if size > 0 && len(eps) > 0 {
		per = max(1, (size+len(eps)-1)/len(eps))
	}
	r := &ringHash{points: make([]ringPoint, 0, len(eps)*per), endpoints: len(eps)}
	for _, e := range eps {
		for i := 0; i < per; i++ {
			r.points = append(r.points, ringPoint{hash: HashString(e.Addr + "#" + strconv.Itoa(i)), ep: e})
		}
	}
	sort.Slice(r.points, func(i, j int) bool { return r.points[i].hash < r.points[j].hash })
	return r
}

func (r *ringHash) Pick(_ []*Endpoint, hash uint64, exclude *Endpoint) *Endpoint {
	n := len(r.points)
	if n == 0 {
		return nil
	}
	start := sort.Search(n, func(i int) bool { return r.points[i].hash >= hash })
	var fallback *Endpoint
	for i := 0; i < n; i++ {
		p := r.points[(start+i)%n]
		if p.ep == exclude && r.endpoints > 1 {
			continue
		}
		if p.ep.Healthy() {
			return p.ep
		}
		if fallback == nil && !p.ep.Removed() {
			fallback = p.ep
		}
	}
	return fallback
}

// HashString is the hash consistent-hash balancing uses for keys.
func HashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return mix(h.Sum64())
}

// mix spreads FNV's output over the ring (FNV of similar short strings
// clusters in the high bits).
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// LBPolicy names a load-balancing policy.
type LBPolicy string

// The policies a cluster may use.
const (
	RoundRobin     LBPolicy = "ROUND_ROBIN"
	LeastRequest   LBPolicy = "LEAST_REQUEST"
	Random         LBPolicy = "RANDOM"
	ConsistentHash LBPolicy = "RING_HASH"
)

func newBalancer(p LBPolicy, eps []*Endpoint, ringSize int) (Balancer, error) {
	switch p {
	case RoundRobin, "":
		return &roundRobin{}, nil
	case LeastRequest:
		return leastRequest{}, nil
	case Random:
		return random{}, nil
	case ConsistentHash:
		return newRingHash(eps, ringSize), nil
	}
	return nil, fmt.Errorf("lb_policy: %s is not supported (want ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH or MAGLEV)", p)
}
