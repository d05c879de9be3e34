package v1alpha1

import (
	"net/netip"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validate checks a MetaAuthorizationPolicy as the schema does, and what
// the schema cannot (addresses, the policy's own namespace in targetRefs),
// so that an object from the folder source is held to the same rules and
// every policy the controller accepts compiles in the proxy.
func (m *MetaAuthorizationPolicy) Validate() field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	for i, h := range m.Spec.Hosts {
		if strings.TrimSpace(h) == "" || strings.Contains(h, "*") {
			errs = append(errs, field.Invalid(spec.Child("hosts").Index(i), h, "must be a service host name without wildcards"))
		}
	}
	if m.Spec.Selector != nil && len(m.Spec.TargetRefs) > 0 {
		errs = append(errs, field.Invalid(spec.Child("targetRefs"), len(m.Spec.TargetRefs), "set selector or targetRefs, not both"))
	}
	for i, r := range m.Spec.TargetRefs {
		errs = append(errs, ValidateTargetRef(spec.Child("targetRefs").Index(i), r.Group, r.Kind, r.Name, r.Namespace, m.Namespace)...)
	}
	switch m.Spec.Action {
	case "", ActionAllow, ActionDeny, ActionAudit:
	default:
		errs = append(errs, field.NotSupported(spec.Child("action"), m.Spec.Action, []string{ActionAllow, ActionDeny, ActionAudit}))
	}
	for i := range m.Spec.Rules {
		errs = append(errs, m.Spec.Rules[i].validate(spec.Child("rules").Index(i))...)
	}
	return errs
}

// Target kinds a policy's targetRefs may name, and their groups.
const (
	GatewayGroup      = "gateway.networking.k8s.io"
	ServiceEntryGroup = "networking.istio.io"
)

// ValidateTargetRef checks a policy target: a Service (group "" or
// "core"), a ServiceEntry (networking.istio.io) or a Gateway
// (gateway.networking.k8s.io), in the policy's namespace.
func ValidateTargetRef(p *field.Path, group, kind, name, namespace, policyNS string) field.ErrorList {
	var errs field.ErrorList
	want := map[string][]string{"Service": {"", "core"}, "ServiceEntry": {ServiceEntryGroup}, "Gateway": {GatewayGroup}}
	groups, ok := want[kind]
	switch {
	case !ok:
		errs = append(errs, field.NotSupported(p.Child("kind"), kind, []string{"Service", "ServiceEntry", "Gateway"}))
	case !contains(groups, group):
		errs = append(errs, field.NotSupported(p.Child("group"), group, groups))
	}
	if name == "" {
		errs = append(errs, field.Required(p.Child("name"), ""))
	}
	if namespace != "" && namespace != policyNS {
		errs = append(errs, field.Invalid(p.Child("namespace"), namespace, "must be the policy's own namespace"))
	}
	return errs
}

func (r *AuthorizationRule) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i := range r.From {
		errs = append(errs, r.From[i].Source.validate(p.Child("from").Index(i).Child("source"))...)
	}
	for i := range r.To {
		errs = append(errs, r.To[i].Operation.validate(p.Child("to").Index(i).Child("operation"))...)
	}
	return errs
}

func (s *AuthorizationSource) validate(p *field.Path) field.ErrorList {
	if len(s.Principals)+len(s.NotPrincipals)+len(s.Namespaces)+len(s.NotNamespaces)+len(s.IPBlocks)+len(s.NotIPBlocks) == 0 {
		return field.ErrorList{field.Required(p, "set at least one field (an empty source would match every caller)")}
	}
	var errs field.ErrorList
	errs = append(errs, ValidateValues(p.Child("principals"), s.Principals)...)
	errs = append(errs, ValidateValues(p.Child("notPrincipals"), s.NotPrincipals)...)
	errs = append(errs, ValidateValues(p.Child("namespaces"), s.Namespaces)...)
	errs = append(errs, ValidateValues(p.Child("notNamespaces"), s.NotNamespaces)...)
	errs = append(errs, ValidateIPBlocks(p.Child("ipBlocks"), s.IPBlocks)...)
	errs = append(errs, ValidateIPBlocks(p.Child("notIpBlocks"), s.NotIPBlocks)...)
	return errs
}

func (o *AuthorizationOperation) validate(p *field.Path) field.ErrorList {
	if len(o.Ports)+len(o.NotPorts)+len(o.Attributes) == 0 {
		return field.ErrorList{field.Required(p, "set at least one field (an empty operation would match every request)")}
	}
	var errs field.ErrorList
	for _, f := range []struct {
		name  string
		ports []uint32
	}{{"ports", o.Ports}, {"notPorts", o.NotPorts}} {
		for i, n := range f.ports {
			if n == 0 || n > 65535 {
				errs = append(errs, field.Invalid(p.Child(f.name).Index(i), n, "must be 1 to 65535"))
			}
		}
	}
	names := make([]string, 0, len(o.Attributes))
	for n := range o.Attributes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ap := p.Child("attributes").Key(n)
		a := o.Attributes[n]
		if n == "" {
			errs = append(errs, field.Required(ap, "an attribute name"))
		}
		if len(a.Values) == 0 && len(a.NotValues) == 0 {
			errs = append(errs, field.Required(ap, "set values, notValues or both"))
		}
		errs = append(errs, ValidateValues(ap.Child("values"), a.Values)...)
		errs = append(errs, ValidateValues(ap.Child("notValues"), a.NotValues)...)
	}
	return errs
}

// ValidateValues checks the values of a string field of a source or an
// operation: none may be empty (Istio's forms: exact, "prefix*", "*suffix"
// or "*").
func ValidateValues(p *field.Path, values []string) field.ErrorList {
	var errs field.ErrorList
	for i, v := range values {
		if v == "" {
			errs = append(errs, field.Invalid(p.Index(i), v, "must not be empty"))
		}
	}
	return errs
}

// ValidateIPBlocks checks that each value is a CIDR or a single IPv4 or
// IPv6 address.
func ValidateIPBlocks(p *field.Path, values []string) field.ErrorList {
	var errs field.ErrorList
	for i, v := range values {
		if !ValidIPBlock(v) {
			errs = append(errs, field.Invalid(p.Index(i), v, "must be a CIDR or an IP address"))
		}
	}
	return errs
}

// ValidIPBlock reports whether v is a CIDR or a single IP address without a
// zone.
func ValidIPBlock(v string) bool {
	if strings.Contains(v, "/") {
		_, err := netip.ParsePrefix(v)
		return err == nil
	}
	a, err := netip.ParseAddr(v)
	return err == nil && a.Zone() == ""
}
