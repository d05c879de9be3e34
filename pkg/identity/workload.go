package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Timing of rotation. Refresh at half the remaining lifetime as
// istio-agent does (its SECRET_GRACE_PERIOD_RATIO is 0.5), less up to a
// twentieth of that so that proxies started together do not all call istiod
// at once. Failures retry from retryMin doubling to retryMax; fetchTimeout
// bounds one attempt so a hung CA cannot hold rotation past expiry.
const (
	jitterDivisor = 20
	retryMin      = time.Second
	retryMax      = 30 * time.Second
	fetchTimeout  = 30 * time.Second
)

// errUnchanged is what refresh reports when the source still has the
// certificate installed (files not rewritten yet): it is retried like a
// failure, so a file source is read again soon rather than at half of an
// ever shorter remaining lifetime.
var errUnchanged = errors.New("identity: source returned the certificate already installed")

// Workload holds the current Bundle and rotates it.
type Workload struct {
	src       Source
	log       *slog.Logger
	cur       atomic.Pointer[Bundle]
	rotations atomic.Uint64
	started   atomic.Bool
	// retryMin and retryMax are fields so tests can shorten them.
	retryMin, retryMax time.Duration
}

// NewWorkload returns a Workload that takes its certificates from src and
// logs to log (slog.Default() when nil). It fetches nothing until Start.
func NewWorkload(src Source, log *slog.Logger) *Workload {
	if log == nil {
		log = slog.Default()
	}
	return &Workload{src: src, log: log, retryMin: retryMin, retryMax: retryMax}
}

// Start fetches the first bundle and returns its error: a proxy asked to
// have an identity must not serve without one. It then rotates in the
// background until ctx ends. Rotation swaps an atomic pointer: connections
// already open keep the certificate they were made with (rotation never
// drops a connection) and new handshakes use the new one. After a failed
// Start it may be called again; after a successful one it fails.
func (w *Workload) Start(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return fmt.Errorf("identity: workload started twice")
	}
	b, err := w.src.Fetch(ctx)
	if err != nil {
		w.started.Store(false)
		return fmt.Errorf("identity: first certificate: %w", err)
	}
	w.cur.Store(b)
	w.log.Info("identity: certificate installed", "id", b.ID.String(),
		"serial", b.Cert.Leaf.SerialNumber.String(), "not_after", b.NotAfter)
	go w.rotate(ctx)
	return nil
}

// Current returns the bundle in use, nil before Start succeeded.
func (w *Workload) Current() *Bundle { return w.cur.Load() }

// Rotations returns how many bundles were installed after the first.
func (w *Workload) Rotations() uint64 { return w.rotations.Load() }

// rotate refreshes the bundle until ctx ends.
func (w *Workload) rotate(ctx context.Context) {
	var backoff time.Duration
	wait := refreshDelay(w.Current().NotAfter, time.Now())
	for sleep(ctx, wait) {
		err := w.refresh(ctx)
		if err == nil {
			backoff = 0
			wait = refreshDelay(w.Current().NotAfter, time.Now())
			continue
		}
		backoff = min(max(2*backoff, w.retryMin), w.retryMax)
		left := time.Until(w.Current().NotAfter)
		wait = retryDelay(backoff, left)
		w.logFailure(ctx, err, left, wait)
	}
}

// refresh fetches a bundle and installs it if it is a new one.
func (w *Workload) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	b, err := w.src.Fetch(ctx)
	if err != nil {
		return err
	}
	old := w.Current()
	if b.Cert.Leaf.Equal(old.Cert.Leaf) {
		return errUnchanged
	}
	if b.ID != old.ID {
		w.log.Warn("identity: rotation changed the identity", "old", old.ID.String(), "new", b.ID.String())
	}
	w.cur.Store(b)
	w.rotations.Add(1)
	w.log.Info("identity: certificate rotated", "id", b.ID.String(),
		"serial", b.Cert.Leaf.SerialNumber.String(), "not_after", b.NotAfter)
	return nil
}

func (w *Workload) logFailure(ctx context.Context, err error, left, retry time.Duration) {
	switch {
	case ctx.Err() != nil:
		// Shutting down: the fetch failed because ctx ended.
	case errors.Is(err, errUnchanged):
		w.log.Debug("identity: certificate not renewed yet", "retry_in", retry)
	case left <= 0:
		w.log.Error("identity: certificate expired and renewal failed", "err", err, "retry_in", retry)
	default:
		w.log.Warn("identity: certificate renewal failed", "err", err, "expires_in", left, "retry_in", retry)
	}
}

// refreshDelay is how long to wait before renewing a certificate that
// expires at notAfter: half the remaining lifetime, less a little jitter.
func refreshDelay(notAfter, now time.Time) time.Duration {
	half := notAfter.Sub(now) / 2
	if half <= 0 {
		return 0
	}
	return half - rand.N(half/jitterDivisor+1)
}

// retryDelay is the backoff, cut short so that one attempt still falls
// before the certificate expires in left.
func retryDelay(backoff, left time.Duration) time.Duration {
	if left > 0 && left < backoff {
		return left
	}
	return backoff
}

// sleep waits for d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
