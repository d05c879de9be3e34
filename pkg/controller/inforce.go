package controller

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/rosetta-mesh/rosetta/pkg/apis/fielderrors"
	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// Validated is an object the controller checks before it uses it.
type Validated interface {
	metav1.Object
	Validate() field.ErrorList
}

// InForce validates objects (oldest first) and returns the ones in force:
// each valid object, or the last valid version (kept in last) of an invalid
// one, so that an invalid update leaves the previous version in force.
// Invalid objects get an Accepted=False status in statuses, under
// keyPrefix and their namespace/name; valid ones get none here. It
// reorders objs.
func InForce[T Validated](objs []T, last map[string]T, statuses map[string]RouterStatus, keyPrefix string) []T {
	return inForce(objs, last, statuses, keyPrefix, T.Validate, func(o T) string { return key(o) })
}

// inForce is InForce with the validation and keys given (ones that
// remember their answers).
func inForce[T Validated](objs []T, last map[string]T, statuses map[string]RouterStatus, keyPrefix string, validate func(T) field.ErrorList, keyOf func(T) string) []T {
	sortByAge(objs)
	seen := map[string]bool{}
	var out []T
	for _, o := range objs {
		k := keyOf(o)
		seen[k] = true
		errs := validate(o)
		if len(errs) == 0 {
			last[k] = o
			out = append(out, o)
			continue
		}
		msg := fielderrors.Message(errs)
		if prev, ok := last[k]; ok {
			msg += fmt.Sprintf("; generation %d stays in force", prev.GetGeneration())
			out = append(out, prev)
		}
		// Every API group names the condition Accepted.
		statuses[keyPrefix+k] = RouterStatus{Generation: o.GetGeneration(), Conditions: []metav1.Condition{
			cond(v1alpha1.ConditionAccepted, false, fielderrors.Reason(errs), msg, o.GetGeneration()),
		}}
	}
	for k := range last {
		if !seen[k] {
			delete(last, k)
		}
	}
	return out
}
