// Package fielderrors turns the field errors of a resource's validation into
// the reason and message of its Accepted=False condition. Rosetta's API
// groups (MetaRouter's, Redis's) share it, so their statuses read alike.
package fielderrors

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The reasons of a rejected resource.
const (
	// Invalid: the resource is wrong.
	Invalid = "Invalid"
	// Unsupported: every error is a field the proxy cannot honour yet.
	Unsupported = "Unsupported"
)

// Message joins the errors into one status message.
func Message(errs field.ErrorList) string {
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	return strings.Join(msgs, "; ")
}

// Reason is Unsupported when every error is a field the proxy cannot honour
// yet, Invalid otherwise.
func Reason(errs field.ErrorList) string {
	for _, e := range errs {
		if e.Type != field.ErrorTypeNotSupported && e.Type != field.ErrorTypeForbidden {
			return Invalid
		}
	}
	return Unsupported
}
