package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Unavailable ends a test whose dependency (what) is missing: it fails
// under CI=true, where make test has installed and built everything first,
// and skips otherwise, so a developer without the peer can still run the
// rest.
func Unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s cannot run: %v", what, err)
	}
	t.Skipf("%s skipped: %v", what, err)
}

// NeedTool is the path of the program name, or Unavailable naming how to
// install it (install, say "apt-get install -y redis-server").
func NeedTool(t testing.TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, name+" ("+install+")", err)
	}
	return p
}
