package v1alpha1

import (
	"net"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validate checks what the schema cannot and refuses fields the proxy
// cannot honour yet. The controller runs it on every RedisService, so
// objects that bypassed the API server (the folder source, Aeraki's CRDs)
// are held to the same rules. Unsupported fields come back as
// field.ErrorTypeForbidden or field.ErrorTypeNotSupported.
func (r *RedisService) Validate() field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	errs = append(errs, validateHosts(spec.Child("host"), r.Spec.Host)...)
	if s := r.Spec.Settings; s != nil {
		errs = append(errs, validateSettings(spec.Child("settings"), s)...)
	}
	if len(r.Spec.Redis) == 0 {
		errs = append(errs, field.Required(spec.Child("redis"), "at least one route"))
	}
	prefixes := map[string]bool{}
	for i := range r.Spec.Redis {
		p := spec.Child("redis").Index(i)
		rt := &r.Spec.Redis[i]
		prefix := rt.Prefix()
		mp := p.Child("match", "key", "prefix")
		if prefixes[prefix] {
			if prefix == "" {
				errs = append(errs, field.Duplicate(p.Child("match"), "at most one catch-all route (a route without a key prefix)"))
			} else {
				errs = append(errs, field.Duplicate(mp, prefix))
			}
		}
		prefixes[prefix] = true
		if rt.Match != nil && rt.Match.Key != nil && rt.Match.Key.RemovePrefix && prefix == "" {
			errs = append(errs, field.Invalid(p.Child("match", "key", "removePrefix"), true, "removePrefix needs a prefix"))
		}
		errs = append(errs, validateDestination(p.Child("route"), rt.Route)...)
		for j, m := range rt.Mirror {
			errs = append(errs, validateDestination(p.Child("mirror").Index(j).Child("route"), m.Route)...)
			errs = append(errs, validatePercent(p.Child("mirror").Index(j).Child("percentage"), m.Percentage)...)
		}
	}
	for i, f := range r.Spec.Faults {
		errs = append(errs, validateFault(spec.Child("faults").Index(i), &f)...)
	}
	return errs
}

// Prefix is the route's key prefix; "" for the catch-all.
func (r *Route) Prefix() string {
	if r.Match == nil || r.Match.Key == nil {
		return ""
	}
	return r.Match.Key.Prefix
}

func validateHosts(p *field.Path, hosts []string) field.ErrorList {
	var errs field.ErrorList
	if len(hosts) == 0 {
		errs = append(errs, field.Required(p, "at least one host"))
	}
	for i, h := range hosts {
		if strings.TrimSpace(h) == "" || strings.Contains(h, "*") {
			errs = append(errs, field.Invalid(p.Index(i), h, "must be a service host name without wildcards"))
		}
	}
	return errs
}

// ReadPolicies are the read policies the proxy honours.
var ReadPolicies = []string{string(ReadMaster), string(ReadPreferReplica)}

func validateReadPolicy(p *field.Path, rp ReadPolicy) field.ErrorList {
	if rp == "" || rp == ReadMaster || rp == ReadPreferReplica {
		return nil
	}
	return field.ErrorList{field.NotSupported(p, string(rp), ReadPolicies)}
}

func validateSettings(p *field.Path, s *Settings) field.ErrorList {
	var errs field.ErrorList
	if s.CaseInsensitive {
		errs = append(errs, field.Forbidden(p.Child("caseInsensitive"), "not supported yet: key prefixes match case-sensitively"))
	}
	if s.OpTimeout != nil && s.OpTimeout.Duration < 0 {
		errs = append(errs, field.Invalid(p.Child("opTimeout"), s.OpTimeout.Duration.String(), "must not be negative"))
	}
	errs = append(errs, validateReadPolicy(p.Child("readPolicy"), s.ReadPolicy)...)
	if s.Auth != nil {
		errs = append(errs, validateAuth(p.Child("auth"), s.Auth)...)
	}
	return errs
}

func validateDestination(p *field.Path, d *Destination) field.ErrorList {
	if d == nil {
		return field.ErrorList{field.Required(p, "a destination")}
	}
	var errs field.ErrorList
	if d.Host == "" {
		errs = append(errs, field.Required(p.Child("host"), ""))
	} else if strings.Contains(d.Host, "*") {
		errs = append(errs, field.Invalid(p.Child("host"), d.Host, "must be a service host name without wildcards"))
	}
	if d.Port > 65535 {
		errs = append(errs, field.Invalid(p.Child("port"), d.Port, "must be 1 to 65535"))
	}
	return errs
}

func validatePercent(p *field.Path, v *Percent) field.ErrorList {
	if v != nil && (v.Value < 0 || v.Value > 100) {
		return field.ErrorList{field.Invalid(p.Child("value"), v.Value, "must be 0 to 100")}
	}
	return nil
}

func validateFault(p *field.Path, f *Fault) field.ErrorList {
	var errs field.ErrorList
	switch f.Type {
	case "", FaultDelay:
		if f.Delay == nil || f.Delay.Duration <= 0 {
			errs = append(errs, field.Required(p.Child("delay"), "a DELAY fault needs a positive delay"))
		}
	case FaultError:
		if f.Delay != nil && f.Delay.Duration < 0 {
			errs = append(errs, field.Invalid(p.Child("delay"), f.Delay.Duration.String(), "must not be negative"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("type"), string(f.Type), []string{string(FaultDelay), string(FaultError)}))
	}
	errs = append(errs, validatePercent(p.Child("percentage"), f.Percentage)...)
	for i, c := range f.Commands {
		if !isCommandName(c) {
			errs = append(errs, field.Invalid(p.Child("commands").Index(i), c, "must be a command name (letters, digits, '_' and '-')"))
		}
	}
	return errs
}

// isCommandName accepts what a Redis command name may be, so that names
// can go into a route's regular expression without escaping surprises.
func isCommandName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Validate checks a RedisDestination.
func (d *RedisDestination) Validate() field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if d.Spec.Host == "" {
		errs = append(errs, field.Required(spec.Child("host"), ""))
	} else if strings.Contains(d.Spec.Host, "*") {
		errs = append(errs, field.Invalid(spec.Child("host"), d.Spec.Host, "must be a service host name without wildcards"))
	}
	pool := d.Pool()
	pp := spec.Child("trafficPolicy", "connectionPool")
	if t := pool.TCP; t != nil {
		tp := pp.Child("tcp")
		if t.MaxConnections < 0 {
			errs = append(errs, field.Invalid(tp.Child("maxConnections"), t.MaxConnections, "must not be negative"))
		}
		if t.ConnectTimeout != nil && t.ConnectTimeout.Duration <= 0 {
			errs = append(errs, field.Invalid(tp.Child("connectTimeout"), t.ConnectTimeout.Duration.String(), "must be positive"))
		}
		if t.TCPKeepalive != nil {
			errs = append(errs, field.Forbidden(tp.Child("tcpKeepalive"), "not supported yet"))
		}
		if t.MaxConnectionDuration != nil {
			errs = append(errs, field.Forbidden(tp.Child("maxConnectionDuration"), "not supported yet"))
		}
		if t.IdleTimeout != nil {
			errs = append(errs, field.Forbidden(tp.Child("idleTimeout"), "not supported yet"))
		}
	}
	if rs := pool.Redis; rs != nil {
		errs = append(errs, validateRedisSettings(pp.Child("redis"), rs)...)
	}
	return errs
}

// Pool returns the connection pool settings, empty when absent.
func (d *RedisDestination) Pool() *ConnectionPool {
	if tp := d.Spec.TrafficPolicy; tp != nil && tp.ConnectionPool != nil {
		return tp.ConnectionPool
	}
	return &ConnectionPool{}
}

// Redis returns the Redis settings, empty when absent.
func (d *RedisDestination) Redis() *RedisSettings {
	if r := d.Pool().Redis; r != nil {
		return r
	}
	return &RedisSettings{}
}

func validateRedisSettings(p *field.Path, rs *RedisSettings) field.ErrorList {
	var errs field.ErrorList
	switch rs.Mode {
	case "", ModeProxy, ModeCluster:
	default:
		errs = append(errs, field.NotSupported(p.Child("mode"), string(rs.Mode), []string{string(ModeProxy), string(ModeCluster)}))
	}
	if rs.Auth != nil {
		errs = append(errs, validateAuth(p.Child("auth"), rs.Auth)...)
	}
	for i, e := range rs.DiscoveryEndpoints {
		if _, err := SplitEndpoint(e); err != nil {
			errs = append(errs, field.Invalid(p.Child("discoveryEndpoints").Index(i), e, err.Error()))
		}
	}
	errs = append(errs, validateReadPolicy(p.Child("readPolicy"), rs.ReadPolicy)...)
	if rs.ReadPolicy == ReadPreferReplica && rs.Mode != ModeCluster {
		errs = append(errs, field.Invalid(p.Child("readPolicy"), string(rs.ReadPolicy), "PREFER_REPLICA needs mode CLUSTER"))
	}
	if rs.HashByKey && rs.Mode == ModeCluster {
		errs = append(errs, field.Invalid(p.Child("hashByKey"), true, "a Redis Cluster places keys by slot; hashByKey is for mode PROXY"))
	}
	return errs
}

func validateAuth(p *field.Path, a *Auth) field.ErrorList {
	var errs field.ErrorList
	switch {
	case (a.Secret == nil) == (a.Plain == nil):
		errs = append(errs, field.Invalid(p, "", "set exactly one of secret and plain"))
	case a.Secret != nil && a.Secret.Name == "":
		errs = append(errs, field.Required(p.Child("secret", "name"), ""))
	case a.Plain != nil && a.Plain.Password == "":
		errs = append(errs, field.Required(p.Child("plain", "password"), ""))
	}
	return errs
}

// HostPort is a parsed discovery endpoint.
type HostPort struct {
	Host string
	Port uint32
}

// SplitEndpoint parses "host:port" ("[::1]:6379" for IPv6).
func SplitEndpoint(s string) (HostPort, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return HostPort{}, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 || h == "" {
		return HostPort{}, &net.AddrError{Err: "want host:port with a port from 1 to 65535", Addr: s}
	}
	return HostPort{Host: h, Port: uint32(n)}, nil
}
