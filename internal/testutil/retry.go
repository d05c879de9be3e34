package testutil

import (
	"testing"
	"time"
)

// RetryCalls is how many calls RetryOn's scenario makes per condition.
const RetryCalls = 6

// RetryScenario makes RetryCalls calls through a proxy whose route retries
// once on the condition on (with perTry as its per-try timeout when
// positive) to a round-robin cluster of bad and a good server, and
// returns how many failed and the first failure.
type RetryScenario func(t *testing.T, bad *BadPeer, on string, perTry time.Duration) (failed int, first error)

// RetryOn proves two retry_on conditions through a protocol's real client:
// against a stalling peer, "timeout" with a per-try timeout, and against a
// resetting one, "reset". With the condition every call succeeds, each
// stalled try cut well before routeTimeout (the route's own, which ends a
// try the per-try timeout did not cut); with the other condition some
// fail, or the test could not tell a retry from luck.
func RetryOn(t *testing.T, routeTimeout time.Duration, run RetryScenario) {
	cases := []struct {
		name   string
		bad    func(t testing.TB) *BadPeer
		perTry time.Duration
		on     string
		other  string // a condition that does not cover the failure
	}{
		{"timeout: a server that stalls, per-try timeout", StallingPeer, 300 * time.Millisecond, "timeout", "reset"},
		{"reset: a server that resets", func(t testing.TB) *BadPeer { return ResettingPeer(t, 0) }, 0, "reset", "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, on := range []string{tc.on, tc.other} {
				bad := tc.bad(t)
				start := time.Now()
				failed, err := run(t, bad, on, tc.perTry)
				took := time.Since(start)
				if bad.Reads.Load() == 0 {
					t.Fatalf("retry_on %s: no call reached the bad peer", on)
				}
				switch {
				case on == tc.on && failed > 0:
					t.Errorf("retry_on %s: %d of %d calls failed: %v", on, failed, RetryCalls, err)
				case on == tc.on && tc.perTry > 0 && took >= routeTimeout:
					t.Errorf("retry_on %s: %d calls took %v: the per-try timeout did not cut the stalled tries", on, RetryCalls, took)
				case on != tc.on && failed == 0:
					t.Errorf("retry_on %s: no call failed, so the test cannot tell a retry from luck", on)
				}
			}
		})
	}
}
