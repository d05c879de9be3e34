package v1alpha1

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

func validateLocalRateLimit(p *field.Path, l *LocalRateLimit) field.ErrorList {
	var errs field.ErrorList
	if l.TokenBucket == nil && len(l.Conditions) == 0 {
		errs = append(errs, field.Required(p, "set tokenBucket, conditions or both"))
	}
	if l.TokenBucket != nil {
		errs = append(errs, validateBucket(p.Child("tokenBucket"), l.TokenBucket)...)
	}
	for i := range l.Conditions {
		c := &l.Conditions[i]
		cp := p.Child("conditions").Index(i)
		errs = append(errs, validateMatch(cp.Child("match"), &c.Match)...)
		errs = append(errs, validateBucket(cp.Child("tokenBucket"), &c.TokenBucket)...)
	}
	return errs
}

func validateGlobalRateLimit(p *field.Path, g *GlobalRateLimit) field.ErrorList {
	var errs field.ErrorList
	if g.Match != nil {
		errs = append(errs, validateMatch(p.Child("match"), g.Match)...)
	}
	if strings.TrimSpace(g.Domain) == "" {
		errs = append(errs, field.Required(p.Child("domain"), "the rate limit domain of the service's config"))
	}
	if g.RequestTimeout != nil && g.RequestTimeout.Duration <= 0 {
		errs = append(errs, field.Invalid(p.Child("requestTimeout"), g.RequestTimeout.Duration.String(), "must be positive"))
	}
	if g.RateLimitService == "" {
		errs = append(errs, field.Required(p.Child("rateLimitService"), `"outbound|PORT||HOST" or "host:port"`))
	} else if _, _, err := g.ServiceAddress(); err != nil {
		errs = append(errs, field.Invalid(p.Child("rateLimitService"), g.RateLimitService, err.Error()))
	}
	if len(g.Descriptors) == 0 {
		errs = append(errs, field.Required(p.Child("descriptors"), "at least one entry"))
	}
	for i, d := range g.Descriptors {
		dp := p.Child("descriptors").Index(i)
		if d.Property == "" {
			errs = append(errs, field.Required(dp.Child("property"), "the request attribute the entry's value comes from"))
		}
		if d.DescriptorKey == "" {
			errs = append(errs, field.Required(dp.Child("descriptorKey"), "the entry's key in the service's config"))
		}
	}
	return errs
}

// ServiceAddress is the host and port of the rate limit service that
// RateLimitService names, as Istio's cluster name
// ("outbound|PORT||HOST", Aeraki's form) or as "host:port".
func (g *GlobalRateLimit) ServiceAddress() (string, uint32, error) {
	s := g.RateLimitService
	var host, port string
	if strings.Contains(s, "|") {
		parts := strings.Split(s, "|")
		if len(parts) != 4 || parts[0] != "outbound" {
			return "", 0, fmt.Errorf(`an Istio cluster name is "outbound|PORT||HOST"`)
		}
		if parts[2] != "" {
			return "", 0, fmt.Errorf("a subset (%q) is not supported: the service is called at its host name", parts[2])
		}
		host, port = parts[3], parts[1]
	} else {
		var err error
		if host, port, err = net.SplitHostPort(s); err != nil {
			return "", 0, fmt.Errorf(`"outbound|PORT||HOST" or "host:port": %v`, err)
		}
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("port %q: must be 1 to 65535", port)
	}
	if host == "" || strings.ContainsAny(host, " */") {
		return "", 0, fmt.Errorf("host %q: must be a host name or an IP address", host)
	}
	return host, uint32(n), nil
}
