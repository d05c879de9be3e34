package router

import (
	"fmt"
	"sync"
	"time"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
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
