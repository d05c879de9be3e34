package v1alpha1

import (
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// RetryOnConditions are the failures a route may retry on.
var RetryOnConditions = []string{"connect-failure", "reset", "timeout", "unavailable"}

// Validate checks what the schema cannot (regular expressions, duplicate
// names) and refuses fields the proxy cannot honour yet. The controller
// runs it on every MetaRouter, so objects that bypassed the API server's
// validation (the folder source, older CRDs) are held to the same rules.
// Unsupported fields come back as field.ErrorTypeForbidden or
// field.ErrorTypeNotSupported.
func (m *MetaRouter) Validate() field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if len(m.Spec.Hosts) == 0 {
		errs = append(errs, field.Required(spec.Child("hosts"), "at least one host"))
	}
	for i, h := range m.Spec.Hosts {
		if strings.TrimSpace(h) == "" || strings.Contains(h, "*") {
			errs = append(errs, field.Invalid(spec.Child("hosts").Index(i), h, "must be a service host name without wildcards"))
		}
	}
	for i, g := range m.Spec.Gateways {
		errs = append(errs, validateGatewayRef(spec.Child("gateways").Index(i), g)...)
	}
	if l := m.Spec.LocalRateLimit; l != nil {
		errs = append(errs, validateLocalRateLimit(spec.Child("localRateLimit"), l)...)
	}
	if g := m.Spec.GlobalRateLimit; g != nil {
		errs = append(errs, validateGlobalRateLimit(spec.Child("globalRateLimit"), g)...)
	}
	for i, e := range m.Spec.ExportTo {
		if e == "" || strings.Contains(e, "/") {
			errs = append(errs, field.Invalid(spec.Child("exportTo").Index(i), e, `must be ".", "*" or a namespace`))
		}
	}
	names := map[string]bool{}
	for i := range m.Spec.Routes {
		p := spec.Child("routes").Index(i)
		r := &m.Spec.Routes[i]
		if r.Name != "" {
			if names[r.Name] {
				errs = append(errs, field.Duplicate(p.Child("name"), r.Name))
			}
			names[r.Name] = true
		}
		errs = append(errs, r.validate(p)...)
	}
	return errs
}

func (r *MetaRoute) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if r.Match != nil {
		errs = append(errs, validateMatch(p.Child("match"), r.Match)...)
	}
	if len(r.Route) == 0 {
		errs = append(errs, field.Required(p.Child("route"), "at least one destination"))
	}
	sum := int32(0)
	for i, d := range r.Route {
		dp := p.Child("route").Index(i)
		if d.Weight < 0 || d.Weight > 100 {
			errs = append(errs, field.Invalid(dp.Child("weight"), d.Weight, "must be 0 to 100"))
		}
		sum += d.Weight
		errs = append(errs, validateDestination(dp.Child("destination"), &d.Destination)...)
	}
	if len(r.Route) > 1 && sum != 100 {
		errs = append(errs, field.Invalid(p.Child("route"), sum, "the weights must add up to 100"))
	}
	if r.Mirror != nil {
		errs = append(errs, validateDestination(p.Child("mirror"), r.Mirror)...)
	}
	errs = append(errs, validatePercent(p.Child("mirrorPercentage"), r.MirrorPercentage)...)
	for i, kv := range r.RequestMutation {
		if kv.Key == "" {
			errs = append(errs, field.Required(p.Child("requestMutation").Index(i).Child("key"), ""))
		}
	}
	for i, kv := range r.ResponseMutation {
		if kv.Key == "" {
			errs = append(errs, field.Required(p.Child("responseMutation").Index(i).Child("key"), ""))
		}
	}
	if r.Timeout != nil && r.Timeout.Duration < 0 {
		errs = append(errs, field.Invalid(p.Child("timeout"), r.Timeout.Duration.String(), "must not be negative"))
	}
	if r.Retries != nil {
		errs = append(errs, validateRetries(p.Child("retries"), r.Retries)...)
	}
	if r.Fault != nil {
		errs = append(errs, validateFault(p.Child("fault"), r.Fault)...)
	}
	for i, h := range r.HashPolicy {
		if h == "" {
			errs = append(errs, field.Required(p.Child("hashPolicy").Index(i), "an attribute name"))
		}
	}
	if b := r.LocalRateLimit; b != nil {
		errs = append(errs, validateBucket(p.Child("localRateLimit"), b)...)
	}
	return errs
}

func validateMatch(p *field.Path, m *MetaRouteMatch) field.ErrorList {
	var errs field.ErrorList
	for name, sm := range m.Attributes {
		ap := p.Child("attributes").Key(name)
		if name == "" {
			errs = append(errs, field.Required(ap, "an attribute name"))
		}
		set := 0
		for _, s := range []*string{sm.Exact, sm.Prefix, sm.Regex} {
			if s != nil {
				set++
			}
		}
		if set > 1 {
			errs = append(errs, field.Invalid(ap, name, "set at most one of exact, prefix and regex"))
		}
		if sm.Regex != nil {
			if _, err := regexp.Compile(*sm.Regex); err != nil {
				errs = append(errs, field.Invalid(ap.Child("regex"), *sm.Regex, err.Error()))
			}
		}
	}
	return errs
}

func validateDestination(p *field.Path, d *Destination) field.ErrorList {
	var errs field.ErrorList
	if d.Host == "" {
		errs = append(errs, field.Required(p.Child("host"), ""))
	}
	if d.Port != nil && (d.Port.Number == 0 || d.Port.Number > 65535) {
		errs = append(errs, field.Invalid(p.Child("port", "number"), d.Port.Number, "must be 1 to 65535"))
	}
	return errs
}

func validatePercent(p *field.Path, v *Percent) field.ErrorList {
	if v != nil && (v.Value < 0 || v.Value > 100) {
		return field.ErrorList{field.Invalid(p.Child("value"), v.Value, "must be 0 to 100")}
	}
	return nil
}

func validateRetries(p *field.Path, r *Retries) field.ErrorList {
	var errs field.ErrorList
	if r.Attempts < 0 || r.Attempts > 10 {
		errs = append(errs, field.Invalid(p.Child("attempts"), r.Attempts, "must be 0 to 10"))
	}
	if r.PerTryTimeout != nil && r.PerTryTimeout.Duration <= 0 {
		errs = append(errs, field.Invalid(p.Child("perTryTimeout"), r.PerTryTimeout.Duration.String(), "must be positive"))
	}
	for _, c := range SplitRetryOn(r.RetryOn) {
		if !contains(RetryOnConditions, c) {
			errs = append(errs, field.NotSupported(p.Child("retryOn"), c, RetryOnConditions))
		}
	}
	return errs
}

// SplitRetryOn splits a comma separated retryOn list.
func SplitRetryOn(s string) []string {
	var out []string
	for _, c := range strings.Split(s, ",") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return out
}

func validateFault(p *field.Path, f *Fault) field.ErrorList {
	var errs field.ErrorList
	if f.Delay == nil && f.Abort == nil {
		errs = append(errs, field.Required(p, "set delay, abort or both"))
	}
	if d := f.Delay; d != nil {
		if d.FixedDelay.Duration <= 0 {
			errs = append(errs, field.Invalid(p.Child("delay", "fixedDelay"), d.FixedDelay.Duration.String(), "must be positive"))
		}
		errs = append(errs, validatePercent(p.Child("delay", "percentage"), d.Percentage)...)
	}
	if a := f.Abort; a != nil {
		statuses := []string{"unavailable", "timeout", "rate_limited", "fault"}
		if !contains(statuses, a.Status) {
			errs = append(errs, field.NotSupported(p.Child("abort", "status"), a.Status, statuses))
		}
		errs = append(errs, validatePercent(p.Child("abort", "percentage"), a.Percentage)...)
	}
	return errs
}

func validateBucket(p *field.Path, b *TokenBucket) field.ErrorList {
	var errs field.ErrorList
	if b.MaxTokens == 0 {
		errs = append(errs, field.Invalid(p.Child("maxTokens"), b.MaxTokens, "must be at least 1"))
	}
	if b.TokensPerFill != nil && *b.TokensPerFill == 0 {
		errs = append(errs, field.Invalid(p.Child("tokensPerFill"), *b.TokensPerFill, "must be at least 1"))
	}
	if b.FillInterval.Duration <= 0 {
		errs = append(errs, field.Invalid(p.Child("fillInterval"), b.FillInterval.Duration.String(), "must be positive"))
	}
	return errs
}

// Validate checks an ApplicationProtocol.
func (a *ApplicationProtocol) Validate() field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if a.Spec.Protocol == "" {
		errs = append(errs, field.Required(spec.Child("protocol"), ""))
	}
	if a.Spec.Codec == "" {
		errs = append(errs, field.Required(spec.Child("codec"), ""))
	}
	return errs
}

// CodecName is the registered codec an ApplicationProtocol names; Aeraki's
// "aeraki.meta_protocol.codec.<name>" becomes "<name>".
func (a *ApplicationProtocol) CodecName() string {
	return strings.TrimPrefix(a.Spec.Codec, "aeraki.meta_protocol.codec.")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// validateGatewayRef accepts "mesh", or an Istio Gateway as "name" or
// "namespace/name".
func validateGatewayRef(p *field.Path, g string) field.ErrorList {
	if g == "mesh" {
		return nil
	}
	ns, name, qualified := strings.Cut(g, "/")
	if !qualified {
		ns, name = "", g
	}
	parts := []string{name}
	if qualified {
		parts = append(parts, ns)
	}
	var errs field.ErrorList
	for _, part := range parts {
		for _, msg := range validation.IsDNS1123Subdomain(part) {
			errs = append(errs, field.Invalid(p, g, "\"mesh\", or a Gateway as name or namespace/name: "+msg))
		}
	}
	return errs
}
