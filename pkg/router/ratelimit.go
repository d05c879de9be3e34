package router

import (
	"fmt"
	"sync"
	"time"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// TokenBucket is a route's local rate limit: max tokens, refilled by
// perFill every interval. It is shared by every connection of the proxy.
type TokenBucket struct {
	max      float64
	perFill  float64
	interval time.Duration

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func compileRateLimit(l *configv1alpha1.LocalRateLimit) (*TokenBucket, error) {
	if l == nil {
		return nil, nil
	}
	if l.GetMaxTokens() == 0 {
		return nil, fmt.Errorf("local_rate_limit.max_tokens: must be greater than 0")
	}
	iv := l.GetFillInterval().AsDuration()
	if iv <= 0 {
		return nil, fmt.Errorf("local_rate_limit.fill_interval: must be greater than 0")
	}
	per := l.GetTokensPerFill()
	if per == 0 {
		per = 1
	}
	return &TokenBucket{max: float64(l.GetMaxTokens()), perFill: float64(per), interval: iv, tokens: float64(l.GetMaxTokens())}, nil
}

// Allow takes a token if there is one.
func (b *TokenBucket) Allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens += b.perFill * float64(now.Sub(b.last)) / float64(b.interval)
		if b.tokens > b.max {
			b.tokens = b.max
		}
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// ServiceLimit is a service's local rate limit (Aeraki's MetaRouter
// localRateLimit): buckets shared by every route of one route
// configuration, in each proxy. A request takes a token from the bucket of
// the first condition it matches, else from the default bucket.
type ServiceLimit struct {
	conditions []limitCondition
	// fallback is nil when requests that match no condition are not limited.
	fallback *TokenBucket
}

type limitCondition struct {
	conds  []condition
	bucket *TokenBucket
}

// Allow takes a token from the bucket that applies to m, if any applies;
// false when that bucket is empty.
func (l *ServiceLimit) Allow(m *codec.Message, now time.Time) bool {
	if l == nil {
		return true
	}
	for i := range l.conditions {
		if all(l.conditions[i].conds, m) {
			return l.conditions[i].bucket.Allow(now)
		}
	}
	return l.fallback == nil || l.fallback.Allow(now)
}

func compileServiceLimit(l *configv1alpha1.ServiceLocalRateLimit) (*ServiceLimit, error) {
	if l == nil {
		return nil, nil
	}
	out := &ServiceLimit{}
	var err error
	if l.GetTokenBucket() != nil {
		if out.fallback, err = compileRateLimit(l.GetTokenBucket()); err != nil {
			return nil, fmt.Errorf("local_rate_limit.token_bucket: %w", err)
		}
	}
	for i, c := range l.GetConditions() {
		p := fmt.Sprintf("local_rate_limit.conditions[%d]", i)
		lc := limitCondition{}
		if lc.conds, err = compileMatch(c.GetMatch()); err != nil {
			return nil, fmt.Errorf("%s.match.%w", p, err)
		}
		if c.GetTokenBucket() == nil {
			return nil, fmt.Errorf("%s.token_bucket: required", p)
		}
		if lc.bucket, err = compileRateLimit(c.GetTokenBucket()); err != nil {
			return nil, fmt.Errorf("%s.token_bucket: %w", p, err)
		}
		out.conditions = append(out.conditions, lc)
	}
	if out.fallback == nil && len(out.conditions) == 0 {
		return nil, fmt.Errorf("local_rate_limit: a token_bucket or conditions are required")
	}
	return out, nil
}

// DefaultGlobalTimeout bounds a call to the rate limit service when the
// config gives no timeout: Envoy's and Aeraki's 20 ms.
const DefaultGlobalTimeout = 20 * time.Millisecond

// GlobalLimit is a route's call to a rate limit service (Envoy's
// envoy.service.ratelimit.v3): which requests it applies to and the one
// descriptor each of them sends.
type GlobalLimit struct {
	conds      []condition
	Domain     string
	Entries    []DescriptorEntry
	Cluster    string
	Timeout    time.Duration
	DenyOnFail bool
}

// DescriptorEntry is a descriptor entry's key and the request attribute
// its value comes from.
type DescriptorEntry struct {
	Key       string
	Attribute string
}

// Descriptor returns the values of the descriptor's entries for m, in
// order, and whether the service is to be asked: m meets the match and
// carries every attribute.
func (g *GlobalLimit) Descriptor(m *codec.Message) ([]string, bool) {
	if g == nil || !all(g.conds, m) {
		return nil, false
	}
	values := make([]string, len(g.Entries))
	for i, e := range g.Entries {
		v, ok := m.Get(e.Attribute)
		if !ok {
			return nil, false
		}
		values[i] = v
	}
	return values, true
}

func compileGlobalLimit(g *configv1alpha1.GlobalRateLimit) (*GlobalLimit, error) {
	if g == nil {
		return nil, nil
	}
	out := &GlobalLimit{Domain: g.GetDomain(), Cluster: g.GetCluster(), Timeout: g.GetTimeout().AsDuration(), DenyOnFail: g.GetDenyOnFail()}
	var err error
	if out.conds, err = compileMatch(g.GetMatch()); err != nil {
		return nil, fmt.Errorf("global_rate_limit.match.%w", err)
	}
	if out.Domain == "" {
		return nil, fmt.Errorf("global_rate_limit.domain: must not be empty")
	}
	if out.Cluster == "" {
		return nil, fmt.Errorf("global_rate_limit.cluster: must not be empty")
	}
	if out.Timeout < 0 {
		return nil, fmt.Errorf("global_rate_limit.timeout: must not be negative")
	}
	if out.Timeout == 0 {
		out.Timeout = DefaultGlobalTimeout
	}
	if len(g.GetDescriptors()) == 0 {
		return nil, fmt.Errorf("global_rate_limit.descriptors: at least one entry is required")
	}
	for i, d := range g.GetDescriptors() {
		if d.GetKey() == "" || d.GetAttribute() == "" {
			return nil, fmt.Errorf("global_rate_limit.descriptors[%d]: a key and an attribute are required", i)
		}
		out.Entries = append(out.Entries, DescriptorEntry{Key: d.GetKey(), Attribute: d.GetAttribute()})
	}
	return out, nil
}
