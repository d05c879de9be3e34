package v1alpha1

import (
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validate checks a DubboAuthorizationPolicy as the schema does, so that an
// object from the folder source (or one written under Aeraki's looser
// schema) is held to the same rules, and every accepted policy compiles in
// the proxy.
func (d *DubboAuthorizationPolicy) Validate() field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	switch d.Spec.Action {
	case "", ActionAllow, ActionDeny:
	default:
		errs = append(errs, field.NotSupported(spec.Child("action"), d.Spec.Action, []string{ActionAllow, ActionDeny}))
	}
	for i, r := range d.Spec.Rules {
		rp := spec.Child("rules").Index(i)
		for j, f := range r.From {
			p := rp.Child("from").Index(j).Child("source")
			s := f.Source
			if s == nil || len(s.Principals)+len(s.NotPrincipals)+len(s.Namespaces)+len(s.NotNamespaces) == 0 {
				errs = append(errs, field.Required(p, "set at least one field (an empty source would match every caller)"))
				continue
			}
			errs = append(errs, values(p.Child("principals"), s.Principals)...)
			errs = append(errs, values(p.Child("notPrincipals"), s.NotPrincipals)...)
			errs = append(errs, values(p.Child("namespaces"), s.Namespaces)...)
			errs = append(errs, values(p.Child("notNamespaces"), s.NotNamespaces)...)
		}
		for j, t := range r.To {
			p := rp.Child("to").Index(j).Child("operation")
			o := t.Operation
			if o == nil || len(o.Interfaces)+len(o.NotInterfaces)+len(o.Methods)+len(o.NotMethods) == 0 {
				errs = append(errs, field.Required(p, "set at least one field (an empty operation would match every call)"))
				continue
			}
			errs = append(errs, values(p.Child("interfaces"), o.Interfaces)...)
			errs = append(errs, values(p.Child("notInterfaces"), o.NotInterfaces)...)
			errs = append(errs, values(p.Child("methods"), o.Methods)...)
			errs = append(errs, values(p.Child("notMethods"), o.NotMethods)...)
		}
	}
	return errs
}

func values(p *field.Path, vs []string) field.ErrorList {
	var errs field.ErrorList
	for i, v := range vs {
		if v == "" {
			errs = append(errs, field.Invalid(p.Index(i), v, "must not be empty"))
		}
	}
	return errs
}
