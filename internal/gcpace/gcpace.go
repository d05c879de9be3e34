// Package gcpace spaces Go's collections out while a proxy allocates fast
// and its live heap is small. GOGC sets the heap's growth between
// collections in proportion to the live heap, so a proxy whose live heap is
// a few MB and which allocates hundreds of MB a second (pipelined Redis at
// 800,000 requests/s) collects dozens of times a second, and each cycle's
// fixed costs add up to about a tenth of its CPU. Growing the heap further
// only while that lasts, and only up to a cap, buys that CPU back for a
// bounded number of MB; a proxy that allocates slowly (an RPC proxy at 1000
// requests/s) collects seconds apart anyway and keeps its small heap.
package gcpace

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

const (
	// Spacing is the least time between collections pacing aims for.
	Spacing = 250 * time.Millisecond
	// tick is how often pacing looks at the allocation rate.
	tick = 100 * time.Millisecond
)

// Percent is the GOGC that lets a heap whose live part is live bytes grow by
// what rate bytes a second allocate in Spacing, with the heap's goal held
// to at most maxHeap bytes by that growth, and never below base.
func Percent(base int, live, rate, maxHeap uint64) int {
	if live == 0 {
		return base
	}
	goal := min(live+uint64(float64(rate)*Spacing.Seconds()), maxHeap)
	if goal <= live {
		return base
	}
	return max(base, int((goal-live)*100/live))
}

// Run sets GOGC every tick from the allocation rate and the live heap, with
// base as the least value and maxHeap as the cap on the heap goal pacing
// raises it to, until ctx ends; then it sets base again.
func Run(ctx context.Context, base int, maxHeap uint64) {
	defer debug.SetGCPercent(base)
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(samples)
	last, lastAt := samples[0].Value.Uint64(), time.Now()
	current := base
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			metrics.Read(samples)
			allocs, live := samples[0].Value.Uint64(), samples[1].Value.Uint64()
			rate := float64(allocs-last) / now.Sub(lastAt).Seconds()
			last, lastAt = allocs, now
			if p := Percent(base, live, uint64(rate), maxHeap); p != current {
				debug.SetGCPercent(p)
				current = p
			}
		}
	}
}
