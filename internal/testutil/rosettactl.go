package testutil

import (
	"encoding/json"
	"os/exec"
	"testing"
)

// CtlResult is what `rosettactl call -o json` prints.
type CtlResult struct {
	Status, Code, Value, Error string
}

// CtlCall runs `rosettactl call -o json` (bin, built with GoBuild) with
// args and returns its answer, and its exit error: a call the peer
// answered with an error exits non-zero and still prints a result. Output
// that is not a result fails t.
func CtlCall(t testing.TB, bin string, args ...string) (CtlResult, error) {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"call", "-o", "json"}, args...)...).Output()
	var r CtlResult
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		t.Fatalf("rosettactl call %v: %v, output %q (%v)", args, jerr, out, err)
	}
	return r, err
}
