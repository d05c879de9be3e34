package kubeenv

import (
	"os"
	"strings"
	"testing"
)

// Unavailable ends a test whose dependency (what) is missing: it fails
// under CI=true, where make test has built everything first, and skips
// otherwise.
func Unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s cannot run: %v", what, err)
	}
	t.Skipf("%s skipped: %v", what, err)
}

// joinArgs renders a command line for messages.
func joinArgs(args []string) string { return strings.Join(args, " ") }
