package fielderrors

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestReasonAndMessage(t *testing.T) {
	bad := field.Invalid(field.NewPath("spec", "host"), "*", "no wildcards")
	later := field.NotSupported(field.NewPath("spec", "mode"), "SENTINEL", []string{"PROXY", "CLUSTER"})
	if got := Reason(field.ErrorList{later}); got != Unsupported {
		t.Fatalf("Reason(unsupported only) = %q, want %q", got, Unsupported)
	}
	if got := Reason(field.ErrorList{later, bad}); got != Invalid {
		t.Fatalf("Reason(unsupported and invalid) = %q, want %q", got, Invalid)
	}
	if got, want := Message(field.ErrorList{bad, later}), bad.Error()+"; "+later.Error(); got != want {
		t.Fatalf("Message = %q, want %q", got, want)
	}
}
