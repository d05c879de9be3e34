package controller

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Pipeline pushes changes: sources call Changed when an object changes,
// and Run reads the inputs, builds an Index and hands it to Push.
//
// When to push (the debounce): a change that comes after a quiet period,
// no push in the last MinDelay, is pushed at once. Changes that come while
// a push runs, or within MinDelay after one ended, are a burst: they wait
// until MinDelay passes with no further change, and no longer than
// MaxDelay after the first of them, then go out in one push. A single
// edit so costs no delay, and a thousand edits in a row make two or three
// pushes (TestDebounceBurst).
type Pipeline struct {
	Builder *Builder
	// Inputs returns the current inputs; an error skips the push (the last
	// index stays in force).
	Inputs func() (*Inputs, error)
	// Push receives each new index and the time of the first change behind it.
	Push func(ix *Index, changedAt time.Time)
	// Unchanged, when set, is called instead of Push after a read that
	// found nothing a proxy's config depends on changed (a status, a
	// file rewritten as it was).
	Unchanged func()
	// MinDelay is the quiet time that makes a change push at once, and
	// the quiet time a burst waits for; MaxDelay bounds a burst's wait
	// from its first change. 100 ms and 1 s when zero.
	MinDelay, MaxDelay time.Duration
	Log                *slog.Logger
	// Metrics, when not nil, count the documents the source rejects.
	Metrics *Metrics
	// DNSRefresh is how often the names the last push resolved are
	// looked up again; an answer that changed makes a push, one that did
	// not makes none. DefaultDNSRefresh when zero; never when negative.
	DNSRefresh time.Duration

	// clock times the debounce; the real one when nil (tests replace it
	// to step time instead of sleeping). afterPush, when set, is called
	// once each push has ended (tests wait on it before moving time on).
	clock     clock
	afterPush func()

	mu sync.Mutex
	// since and last are the first and the last change not yet pushed
	// (zero when none); unsettled is whether one of them may be
	// incomplete (changedUnsettled), which makes it wait as a burst.
	since, last time.Time
	unsettled   bool
	// resolved is set when DNS answers changed: the next push regenerates
	// every scope, as Changes do not trace names to hosts.
	resolved bool
	// pushedObjects are the objects behind the last push, and pushedSeq
	// its Index's number; only Run's goroutine uses them.
	pushedObjects pushedSet
	pushedSeq     uint64
	// pushed is when the last push ended (zero before the first); only
	// Run's goroutine uses it.
	pushed  time.Time
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
func (p *Pipeline) Changed() { p.changed(false) }

// changedUnsettled records a change that may not be complete yet, as a
// file that is being written in place: it is never pushed at once, but
// after MinDelay with no further change, as a burst is.
func (p *Pipeline) changedUnsettled() { p.changed(true) }

func (p *Pipeline) changed(unsettled bool) {
	p.init()
	p.mu.Lock()
	now := p.clock.Now()
	if p.since.IsZero() {
		p.since = now
	}
	p.last = now
	p.unsettled = p.unsettled || unsettled
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
		since, resolved := p.since, p.resolved
		p.since, p.last, p.unsettled, p.resolved = time.Time{}, time.Time{}, false, false
		p.mu.Unlock()
		p.push(since, resolved)
		p.pushed = p.clock.Now()
		if p.afterPush != nil {
			p.afterPush()
		}
	}
}

// wait returns once the pending changes are due (see due), or false when
// ctx ends first. A change that comes meanwhile moves the time they are
// due.
func (p *Pipeline) wait(ctx context.Context) bool {
	for {
		p.mu.Lock()
		at := p.due()
		p.mu.Unlock()
		now := p.clock.Now()
		if !at.After(now) {
			return true
		}
		fired, stop := p.clock.NewTimer(at.Sub(now))
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

// due is when the pending changes are pushed: at once when the first of
// them came after MinDelay without a push (and none is unsettled);
// otherwise they are a burst, pushed MinDelay after the last of them but
// no later than MaxDelay after the first. A change that came while a push
// ran is before that push's end, so it is always in a burst. Callers hold
// p.mu.
func (p *Pipeline) due() time.Time {
	quiet := p.pushed.IsZero() || p.since.Sub(p.pushed) >= p.MinDelay
	if quiet && !p.unsettled {
		return p.since
	}
	at := p.last.Add(p.MinDelay)
	if limit := p.since.Add(p.MaxDelay); at.After(limit) {
		at = limit
	}
	return at
}

// push builds an Index of the current inputs and pushes it, with what
// changed since the last push (Changes); inputs that did not change make
// no push. resolved says DNS answers changed, which reaches every proxy.
func (p *Pipeline) push(since time.Time, resolved bool) {
	start := time.Now()
	in, err := p.Inputs()
	if err != nil {
		p.Log.Error("config not read; the last config stays in force", "err", err)
		return
	}
	p.reportUnused(in.Unused)
	// A read with no change takes its objects in too: they are equal to
	// the pushed ones.
	changes := p.pushedObjects.diff(p.Builder, in)
	if changes != nil {
		changes.All = changes.All || resolved
		if changes.None() {
			p.Metrics.noChange()
			p.Log.Debug("no change to push", "since_change", time.Since(since))
			if p.Unchanged != nil {
				p.Unchanged()
			}
			return
		}
	}
	ix := p.Builder.build(in, changes, p.pushedSeq)
	p.pushedSeq = ix.seq
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
			p.mu.Lock()
			p.resolved = true
			p.mu.Unlock()
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
