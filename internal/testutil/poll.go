package testutil

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// A poll checks its condition after pollFirst, then twice as long each
// time up to pollMax: a quick condition costs a few milliseconds, and a
// server polled while it starts (istiod logs every /ready it refuses) sees
// tens of requests, not thousands.
const (
	pollFirst = 5 * time.Millisecond
	pollMax   = 100 * time.Millisecond
)

// errNotYet is what Poll reports when its condition never held and never
// said why.
var errNotYet = errors.New("condition not met")

// Poll calls cond until it returns true or within has passed, and then
// returns an error naming what and wrapping the last error cond returned
// (cond's error says why it is not done yet; it does not stop the poll).
// It is for code without a test at hand (TestMain, helpers that return
// errors); tests use MustPoll or Eventually.
func Poll(within time.Duration, what string, cond func() (bool, error)) error {
	return poll(within, what, cond, nil)
}

// MustPoll is Poll, failing t with the last error when the time is up.
func MustPoll(t testing.TB, within time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	if err := Poll(within, what, cond); err != nil {
		t.Fatal(err)
	}
}

// Eventually waits until cond holds, failing t if it does not within the
// given time. Tests wait on a condition this way, never on a bare sleep.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := Poll(within, what, func() (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("%v", err)
	}
}

// poll is Poll that also gives up once stop is closed (a process that
// exited will never become ready), reporting errStopped.
func poll(within time.Duration, what string, cond func() (bool, error), stop <-chan struct{}) error {
	deadline := time.Now().Add(within)
	for wait := pollFirst; ; wait = min(2*wait, pollMax) {
		ok, err := cond()
		if ok {
			return nil
		}
		if err == nil {
			err = errNotYet
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s: %w", within, what, err)
		}
		select {
		case <-stop:
			return fmt.Errorf("gave up waiting for %s: %w (last: %w)", what, errStopped, err)
		case <-time.After(wait):
		}
	}
}

// errStopped says a poll ended because what it waited on can no longer
// happen.
var errStopped = errors.New("stopped")
