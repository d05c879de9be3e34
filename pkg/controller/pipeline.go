package controller

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Pipeline debounces changes and pushes: sources call Changed when an
// object changes; after MinDelay without further changes (but no later
// than MaxDelay after the first), Run reads the inputs, builds an Index
// and hands it to Push.
type Pipeline struct {
	Builder *Builder
	// Inputs returns the current inputs; an error skips the push (the last
	// index stays in force).
	Inputs func() (*Inputs, error)
	// Push receives each new index and the time of the first change behind it.
	Push func(ix *Index, changedAt time.Time)
	// MinDelay and MaxDelay bound the debounce; 100 ms and 1 s when zero.
	MinDelay, MaxDelay time.Duration
	Log                *slog.Logger
	// Metrics, when not nil, count the documents the source rejects.
	Metrics *Metrics
	// DNSRefresh is how often the names the last push resolved are
	// looked up again; an answer that changed makes a push, one that did
	// not makes none. DefaultDNSRefresh when zero; never when negative.
	DNSRefresh time.Duration

	// clock times the debounce; the real one when nil (tests replace it
	// to step time instead of sleeping).
	clock clock

	mu      sync.Mutex
	since   time.Time
	notify  chan struct{}
	initErr sync.Once
	// warned are the index warnings of the last push, logged once each;
	// reported the same for the source's unused documents.
	warned   map[string]bool
	reported map[string]bool
}

func (p *Pipeline) init() {
	p.initErr.Do(func() {
		p.notify = make(chan struct{}, 1)
		if p.MinDelay <= 0 {
			p.MinDelay = 100 * time.Millisecond
		}
		if p.MaxDelay <= 0 {
			p.MaxDelay = time.Second
		}
		if p.MaxDelay < p.MinDelay {
			p.MaxDelay = p.MinDelay
		}
		if p.Log == nil {
			p.Log = slog.Default()
		}
		if p.Builder == nil {
			p.Builder = &Builder{}
		}
		if p.DNSRefresh == 0 {
			p.DNSRefresh = DefaultDNSRefresh
		}
		if p.clock == nil {
			p.clock = realClock{}
		}
	})
}

// clock is what the debounce reads time from.
type clock interface {
	Now() time.Time
	// NewTimer returns a channel that receives after d, and a func that
	// stops the timer.
	NewTimer(d time.Duration) (<-chan time.Time, func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// Changed records a change; it never blocks.
func (p *Pipeline) Changed() {
	p.init()
	p.mu.Lock()
	if p.since.IsZero() {
		p.since = p.clock.Now()
	}
	p.mu.Unlock()
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// Run pushes until ctx ends.
func (p *Pipeline) Run(ctx context.Context) {
	p.init()
	if p.DNSRefresh > 0 {
		done := make(chan struct{})
		defer func() { <-done }()
		go func() { defer close(done); p.refreshDNS(ctx) }()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.notify:
		}
		p.mu.Lock()
		pending := !p.since.IsZero()
		p.mu.Unlock()
		if !pending {
			continue // a change's signal that arrived after its push took it
		}
		if !p.wait(ctx) {
			return
		}
		p.mu.Lock()
		since := p.since
		p.since = time.Time{}
		p.mu.Unlock()
		p.push(since)
	}
}

// wait lets changes settle: it returns MinDelay after the last change, or
// MaxDelay after the first, whichever is sooner.
func (p *Pipeline) wait(ctx context.Context) bool {
	p.mu.Lock()
	first := p.since
	p.mu.Unlock()
	deadline := first.Add(p.MaxDelay)
	for {
		now := p.clock.Now()
		next := now.Add(p.MinDelay)
		if next.After(deadline) {
			next = deadline
		}
		fired, stop := p.clock.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			stop()
			return false
		case <-p.notify:
			stop()
		case <-fired:
			return true
		}
	}
}

func (p *Pipeline) push(since time.Time) {
	start := time.Now()
	in, err := p.Inputs()
	if err != nil {
		p.Log.Error("config not read; the last config stays in force", "err", err)
		return
	}
	p.reportUnused(in.Unused)
	ix := p.Builder.Build(in)
	p.Metrics.setSteering(ix)
	p.logWarnings(ix.Warnings())
	p.Push(ix, since)
	p.Log.Debug("pushed", "services", len(ix.hosts), "build", time.Since(start), "since_change", time.Since(since))
}

// refreshDNS looks the last push's names up again every DNSRefresh, and
// records a change when an answer differs, until ctx ends.
func (p *Pipeline) refreshDNS(ctx context.Context) {
	tick := time.NewTicker(p.DNSRefresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if hosts := p.Builder.ResolveAgain(ctx); len(hosts) > 0 {
			p.Log.Info("DNS answers changed", "hosts", hosts)
			p.Changed()
		}
	}
}

// logWarnings logs each warning the previous push did not have, so a
// standing problem is logged once, and again when it comes back.
func (p *Pipeline) logWarnings(ws []string) {
	now := make(map[string]bool, len(ws))
	for _, w := range ws {
		now[w] = true
		if !p.warned[w] {
			p.Log.Warn("config not fully honoured", "warning", w)
		}
	}
	p.warned = now
}

// reportUnused logs each document the source does not use, once while it
// stays so (a warning when rejected), and sets the rejected gauge.
func (p *Pipeline) reportUnused(unused []Unused) {
	p.Metrics.setRejected(unused)
	now := make(map[string]bool, len(unused))
	for _, u := range unused {
		msg := u.String()
		now[msg] = true
		if p.reported[msg] {
			continue
		}
		args := []any{"file", u.File, "document", u.Doc, "kind", u.Kind, "name", u.Name, "reason", u.Reason, "err", u.Err}
		if u.Item >= 0 {
			args = append(args, "item", u.Item)
		}
		if !u.Rejected() {
			p.Log.Info("config object skipped: not an API the controller reads", args...)
			continue
		}
		args = append(args, "previous_in_force", u.PreviousInForce)
		p.Log.Warn("config object rejected", args...)
	}
	p.reported = now
}
