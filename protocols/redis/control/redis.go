package control

// The Redis translation (RedisService and RedisDestination, group
// redis.rosetta.dev or Aeraki's redis.aeraki.io), one Part per push:
//
//   - A port whose codec is redis gets the routes of the RedisService of its
//     host: by key prefix, longest first, the catch-all last. removePrefix
//     is the route mutation redis.strip_prefix. Every route hashes on
//     hash_key, which only a ring hash cluster (hashByKey) uses.
//   - Faults become route faults. For each command the first DELAY and the
//     first ERROR fault that cover it apply, each with its own percentage;
//     commands named by faults get routes of their own (matching key prefix
//     and command) ahead of their route.
//   - A mirror with excludeReadCommands: a route matching the read commands
//     (readCommands), without that mirror, goes ahead of the route.
//   - Codec options are per listener: mode, read policy and upstream
//     credentials come from the RedisDestination of the listener's host
//     (else of the first routed host that has one, the catch-all's first);
//     the RedisService's settings add the client password and may override
//     the read policy. Routes to hosts whose RedisDestination differs share
//     the listener's options: the codec cannot log in per cluster.
//   - A RedisDestination also sets its host's clusters: TCP settings, ring
//     hash (hashByKey), and discoveryEndpoints in place of the endpoints.
//   - Credentials (from Secrets or inline in the object) travel as SDS
//     Secret resources on the proxy's ADS stream; the codec options name
//     them (password_secret, upstream_password_secret), so dumps and logs
//     show names, not passwords. Proxies still receive the values: they
//     must be trusted with them.

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/protocols/redis"
	redisv1 "github.com/rosetta-mesh/rosetta/protocols/redis/api/v1alpha1"
)

// Defaults of a Secret reference's keys.
const (
	defaultPasswordKey = "password"
	defaultUsernameKey = "username"
)

// part is the Redis translation of one push: the RedisService and the
// RedisDestination in force for each host, the Secrets they may name, and
// the status of every Redis object.
type part struct {
	services map[string]*redisv1.RedisService
	dests    map[string]*redisv1.RedisDestination
	secrets  map[string]*corev1.Secret
	// statuses by "<Kind>/<namespace>/<name>".
	statuses map[string]controller.RouterStatus
}

// translator remembers the last valid version of every Redis object, so
// that an invalid update leaves the previous one in force.
type translator struct {
	services map[string]*redisv1.RedisService
	dests    map[string]*redisv1.RedisDestination
}

func newTranslator() controller.Translator {
	return &translator{services: map[string]*redisv1.RedisService{}, dests: map[string]*redisv1.RedisDestination{}}
}

// Statuses implements controller.Part.
func (r *part) Statuses() map[string]controller.RouterStatus { return r.statuses }

// Build indexes the Redis objects of in; ix's services are indexed.
func (t *translator) Build(ix *controller.Index, in *controller.Inputs) controller.Part {
	r := &part{
		services: map[string]*redisv1.RedisService{},
		dests:    map[string]*redisv1.RedisDestination{},
		secrets:  map[string]*corev1.Secret{},
		statuses: map[string]controller.RouterStatus{},
	}
	for _, s := range in.Secrets {
		// A TLS Secret (a Gateway's credential) is a Redis credential
		// only when labelled so.
		if s.Type != corev1.SecretTypeTLS || s.Labels[CredentialsLabel] == "true" {
			r.secrets[controller.Key(s)] = s
		}
	}
	svcs := controller.InForce(controller.ObjectsOf[redisv1.RedisService](in, ServiceKind), t.services, r.statuses, ServiceKind+"/")
	dests := controller.InForce(controller.ObjectsOf[redisv1.RedisDestination](in, DestinationKind), t.dests, r.statuses, DestinationKind+"/")
	r.claim(ix, svcs, dests)
	return r
}

// claim gives each host its oldest RedisService and RedisDestination, and
// sets the objects' conditions.
func (r *part) claim(ix *controller.Index, svcs []*redisv1.RedisService, dests []*redisv1.RedisDestination) {
	claims := map[string]string{} // host -> key of the object that has it
	for _, rs := range svcs {
		var lost []string
		for i, h := range rs.Spec.Host {
			q := ix.Qualify(h, rs.Namespace)
			if w, ok := claims[q]; ok && w != controller.Key(rs) {
				lost = append(lost, fmt.Sprintf("spec.host[%d]: %s is routed by the older RedisService %s", i, q, w))
				continue
			}
			claims[q] = controller.Key(rs)
			r.services[q] = rs
		}
		r.setConditions(ServiceKind, rs, len(lost) == len(rs.Spec.Host), lost, r.serviceRefs(ix, rs))
	}
	for _, rd := range dests {
		q := ix.Qualify(rd.Spec.Host, rd.Namespace)
		var lost []string
		if w, ok := r.dests[q]; ok {
			lost = append(lost, fmt.Sprintf("spec.host: %s is described by the older RedisDestination %s", q, controller.Key(w)))
		} else {
			r.dests[q] = rd
		}
		var missing []string
		if a := rd.Redis().Auth; a != nil {
			if _, _, err := r.credentials(rd.Namespace, a); err != nil {
				missing = append(missing, "spec.trafficPolicy.connectionPool.redis.auth: "+err.Error())
			}
		}
		r.setConditions(DestinationKind, rd, len(lost) > 0, lost, missing)
	}
}

// setConditions records Accepted and ResolvedRefs for an object in force,
// unless it is invalid now (its status already says so).
func (r *part) setConditions(kind string, o controller.Validated, lostAll bool, lost, missing []string) {
	k := kind + "/" + controller.Key(o)
	if _, invalid := r.statuses[k]; invalid {
		return
	}
	gen := o.GetGeneration()
	acc := controller.Condition(redisv1.ConditionAccepted, true, redisv1.ReasonAccepted, "in force", gen)
	switch {
	case lostAll:
		acc = controller.Condition(redisv1.ConditionAccepted, false, redisv1.ReasonConflict, strings.Join(lost, "; "), gen)
	case len(lost) > 0:
		acc = controller.Condition(redisv1.ConditionAccepted, true, redisv1.ReasonConflict, "in force for its other hosts; "+strings.Join(lost, "; "), gen)
	}
	refs := controller.Condition(redisv1.ConditionResolvedRefs, true, redisv1.ReasonResolved, "every reference exists", gen)
	if len(missing) > 0 {
		reason := redisv1.ReasonUnknownHost
		if strings.Contains(missing[0], "Secret") {
			reason = redisv1.ReasonUnknownSecret
		}
		refs = controller.Condition(redisv1.ConditionResolvedRefs, false, reason, strings.Join(missing, "; "), gen)
	}
	r.statuses[k] = controller.RouterStatus{Generation: gen, Conditions: []metav1.Condition{acc, refs}}
}

// serviceRefs lists the destinations and Secrets a RedisService names
// that do not exist.
func (r *part) serviceRefs(ix *controller.Index, rs *redisv1.RedisService) []string {
	var missing []string
	if s := rs.Spec.Settings; s != nil && s.Auth != nil {
		if _, _, err := r.credentials(rs.Namespace, s.Auth); err != nil {
			missing = append(missing, "spec.settings.auth: "+err.Error())
		}
	}
	check := func(p string, d *redisv1.Destination) {
		h := ix.Qualify(d.Host, rs.Namespace)
		if ix.Service(h) == nil {
			missing = append(missing, fmt.Sprintf("%s.host: no Redis service %s", p, h))
		}
	}
	for i, rt := range rs.Spec.Redis {
		check(fmt.Sprintf("spec.redis[%d].route", i), rt.Route)
		for j, m := range rt.Mirror {
			check(fmt.Sprintf("spec.redis[%d].mirror[%d].route", i, j), m.Route)
		}
	}
	return missing
}

// credentials reads an Auth: inline, or from a Secret in namespace ns.
func (r *part) credentials(ns string, a *redisv1.Auth) (user, pass string, err error) {
	if p := a.Plain; p != nil {
		return p.Username, p.Password, nil
	}
	ref := a.Secret
	if ref == nil {
		return "", "", fmt.Errorf("no credentials")
	}
	s := r.secrets[ns+"/"+ref.Name]
	if s == nil {
		return "", "", fmt.Errorf("no Secret %s/%s the controller may read (in Kubernetes it needs the label %s: \"true\", and its name in the chart's redisCredentials value)", ns, ref.Name, CredentialsLabel)
	}
	pk, uk := ref.PasswordField, ref.UsernameField
	if pk == "" {
		pk = defaultPasswordKey
	}
	if uk == "" {
		uk = defaultUsernameKey
	}
	pw, ok := secretValue(s, pk)
	if !ok || pw == "" {
		return "", "", fmt.Errorf("the Secret %s/%s has no key %q", ns, ref.Name, pk)
	}
	user, _ = secretValue(s, uk)
	// Codec options are protobuf strings, which must be UTF-8.
	if !utf8.ValidString(pw) || !utf8.ValidString(user) {
		return "", "", fmt.Errorf("the Secret %s/%s holds credentials that are not UTF-8 text", ns, ref.Name)
	}
	return user, pw, nil
}

// passwordSecret is the SDS Secret that carries an Auth's password, and
// the user name that goes with it (a user name is not a secret). The
// Secret is named after where the password comes from: "Secret/<ns>/<name>/
// <key>" for a Kubernetes Secret, "<owner>/password" for a password inline
// in the object owner ("RedisService/<ns>/<name>").
func (r *part) passwordSecret(owner, ns string, a *redisv1.Auth) (string, *tlsv3.Secret, error) {
	user, pass, err := r.credentials(ns, a)
	if err != nil {
		return "", nil, err
	}
	name := owner + "/password"
	if ref := a.Secret; a.Plain == nil && ref != nil {
		pk := ref.PasswordField
		if pk == "" {
			pk = defaultPasswordKey
		}
		name = "Secret/" + ns + "/" + ref.Name + "/" + pk
	}
	return user, &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{
		Secret: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: pass}},
	}}}, nil
}

// setPassword makes option opt name the secret: a password the port's
// protocol gives inline gives way to it, since the proxy refuses both.
func setPassword(opts map[string]string, opt, secret string) {
	delete(opts, opt)
	opts[opt+config.SecretRefSuffix] = secret
}

// secretValue reads a key of a Secret; stringData (which only the folder
// source has: the API server folds it into data) wins.
func secretValue(s *corev1.Secret, k string) (string, bool) {
	if v, ok := s.StringData[k]; ok {
		return v, true
	}
	v, ok := s.Data[k]
	return string(v), ok
}

// listenerDestination is the RedisDestination that sets a listener's codec
// options: the one of the listener's host, else the first one among the
// hosts its routes send to (the catch-all's first).
func (r *part) listenerDestination(host string, routes []redisv1.Route, qualify func(string) string) *redisv1.RedisDestination {
	if d := r.dests[host]; d != nil {
		return d
	}
	for _, rt := range routes {
		if rt.Route != nil {
			if d := r.dests[qualify(rt.Route.Host)]; d != nil {
				return d
			}
		}
	}
	return nil
}

// CodecOptions are the codec options of a Redis listener: the port's
// protocol's options, then the RedisDestination's (mode, upstream auth,
// read policy), then the RedisService's settings (read policy, the
// password clients must give). Other codecs' options pass unchanged.
func (r *part) CodecOptions(g *controller.Generation, svc *controller.Service, port controller.Port) map[string]string {
	opts := maps.Clone(port.Protocol.CodecOptions)
	if opts == nil {
		opts = map[string]string{}
	}
	rs := r.services[svc.Host]
	var routes []redisv1.Route
	if rs != nil {
		routes = sortedRoutes(rs.Spec.Redis)
	}
	qualify := func(h string) string { return g.Index().Qualify(h, rs.Namespace) } // used only when rs != nil
	if rd := r.listenerDestination(svc.Host, catchAllFirst(routes), qualify); rd != nil {
		rset := rd.Redis()
		if rset.Mode == redisv1.ModeCluster {
			opts[redis.OptMode] = redis.ModeCluster
		}
		if rset.ReadPolicy == redisv1.ReadPreferReplica {
			opts[redis.OptReadPolicy] = redis.ReadPolicyPreferReplica
		}
		if a := rset.Auth; a != nil {
			if user, sec, err := r.passwordSecret(DestinationKind+"/"+controller.Key(rd), rd.Namespace, a); err == nil {
				setPassword(opts, redis.OptUpstreamPassword, g.AddSecret(sec))
				if user != "" {
					opts[redis.OptUpstreamUsername] = user
				}
			}
		}
	}
	if rs != nil && rs.Spec.Settings != nil {
		s := rs.Spec.Settings
		switch s.ReadPolicy {
		case redisv1.ReadPreferReplica:
			opts[redis.OptReadPolicy] = redis.ReadPolicyPreferReplica
		case redisv1.ReadMaster:
			delete(opts, redis.OptReadPolicy)
		}
		if a := s.Auth; a != nil {
			if user, sec, err := r.passwordSecret(ServiceKind+"/"+controller.Key(rs), rs.Namespace, a); err == nil {
				setPassword(opts, redis.OptPassword, g.AddSecret(sec))
				if user != "" {
					opts[redis.OptUsername] = user
				}
			}
		}
	}
	if len(opts) == 0 {
		return nil
	}
	return opts
}

// catchAllFirst puts the catch-all route (last in sorted order) first.
func catchAllFirst(routes []redisv1.Route) []redisv1.Route {
	if n := len(routes); n > 0 && routes[n-1].Prefix() == "" {
		return append([]redisv1.Route{routes[n-1]}, routes[:n-1]...)
	}
	return routes
}

// sortedRoutes orders routes by prefix, longest first, so that the
// proxy's first match is the longest prefix; the catch-all comes last.
func sortedRoutes(routes []redisv1.Route) []redisv1.Route {
	out := slices.Clone(routes)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Prefix(), out[j].Prefix()
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return a < b
	})
	return out
}

// Routes are the routes of a Redis listener: from the host's
// RedisService, or, without one, a single route to the host (nil when a
// MetaRouter routes the host instead, or the port is not Redis).
func (r *part) Routes(g *controller.Generation, svc *controller.Service, port controller.Port) []*configv1alpha1.Route {
	rs := r.services[svc.Host]
	if rs == nil {
		if g.Index().RoutedByMetaRouter(svc.Host, g.Proxy().Namespace) {
			return nil
		}
		return []*configv1alpha1.Route{{
			Name:  "default",
			Match: &configv1alpha1.RouteMatch{},
			Route: &configv1alpha1.RouteAction{
				ClusterSpecifier: &configv1alpha1.RouteAction_Cluster{Cluster: g.Cluster(svc.Host, port.Number, "")},
				HashPolicy:       []*configv1alpha1.HashPolicy{{Attributes: []string{redis.AttrHashKey}}},
			},
		}}
	}
	classes, all := faultClasses(rs.Spec.Faults)
	var timeout *durationpb.Duration
	if s := rs.Spec.Settings; s != nil && s.OpTimeout != nil && s.OpTimeout.Duration > 0 {
		timeout = durationpb.New(s.OpTimeout.Duration)
	}
	var out []*configv1alpha1.Route
	for _, rt := range sortedRoutes(rs.Spec.Redis) {
		out = append(out, routeSet(g, rs, &rt, port.Number, classes, all, timeout)...)
	}
	return out
}

// routeSet translates one RedisService route. Faults by command and
// mirrors that exclude read commands need routes of their own, placed
// ahead of the route and matching the same key prefix plus the commands:
//
//	<name>/fault-<i>[/reads]  commands of fault class i (reads: without
//	                          the mirrors that exclude reads)
//	<name>/reads              read commands, without those mirrors
//	<name>                    every other command
func routeSet(g *controller.Generation, rs *redisv1.RedisService, rt *redisv1.Route, port uint32, classes []faultClass, all *configv1alpha1.FaultInjection, timeout *durationpb.Duration) []*configv1alpha1.Route {
	prefix := rt.Prefix()
	name := "catch-all"
	if prefix != "" {
		name = "prefix:" + prefix
	}
	cluster := destination(g, rs, rt.Route, port)
	var every, keep []*configv1alpha1.MirrorPolicy
	exclude := false
	for _, m := range rt.Mirror {
		mp := &configv1alpha1.MirrorPolicy{Cluster: destination(g, rs, m.Route, port), Percentage: 100}
		if m.Percentage != nil {
			mp.Percentage = m.Percentage.Value
		}
		every = append(every, mp)
		if m.ExcludeReadCommands {
			exclude = true
		} else {
			keep = append(keep, mp)
		}
	}
	var mutation []*configv1alpha1.KeyValue
	if rt.Match != nil && rt.Match.Key != nil && rt.Match.Key.RemovePrefix && prefix != "" {
		mutation = []*configv1alpha1.KeyValue{{Key: redis.AttrStripPrefix, Value: prefix}}
	}
	mk := func(suffix string, cmds []string, mirrors []*configv1alpha1.MirrorPolicy, fault *configv1alpha1.FaultInjection) *configv1alpha1.Route {
		m := &configv1alpha1.RouteMatch{}
		if prefix != "" {
			m.Attributes = append(m.Attributes, &configv1alpha1.AttributeMatch{Name: redis.AttrKey, Match: &configv1alpha1.AttributeMatch_Prefix{Prefix: prefix}})
		}
		if len(cmds) > 0 {
			m.Attributes = append(m.Attributes, &configv1alpha1.AttributeMatch{Name: redis.AttrCommand, Match: &configv1alpha1.AttributeMatch_Regex{Regex: commandRegex(cmds)}})
		}
		return &configv1alpha1.Route{Name: name + suffix, Match: m, Route: &configv1alpha1.RouteAction{
			ClusterSpecifier: &configv1alpha1.RouteAction_Cluster{Cluster: cluster},
			Timeout:          timeout,
			HashPolicy:       []*configv1alpha1.HashPolicy{{Attributes: []string{redis.AttrHashKey}}},
			RequestMutation:  mutation,
			Mirror:           mirrors,
			Fault:            fault,
		}}
	}
	var out []*configv1alpha1.Route
	for i, c := range classes {
		suffix := fmt.Sprintf("/fault-%d", i)
		if !exclude {
			out = append(out, mk(suffix, c.commands, every, c.fault))
			continue
		}
		var reads, writes []string
		for _, cmd := range c.commands {
			if readSet[cmd] {
				reads = append(reads, cmd)
			} else {
				writes = append(writes, cmd)
			}
		}
		if len(reads) > 0 {
			out = append(out, mk(suffix+"/reads", reads, keep, c.fault))
		}
		if len(writes) > 0 {
			out = append(out, mk(suffix, writes, every, c.fault))
		}
	}
	if exclude {
		out = append(out, mk("/reads", readCommands, keep, all))
	}
	return append(out, mk("", nil, every, all))
}

// destination resolves a destination to a cluster: its port, else
// the listener's port when the host has it, else the host's first port.
func destination(g *controller.Generation, rs *redisv1.RedisService, d *redisv1.Destination, listenerPort uint32) string {
	host := g.Index().Qualify(d.Host, rs.Namespace)
	port := listenerPort
	if d.Port != 0 {
		port = d.Port
	} else if svc := g.Index().Service(host); svc != nil {
		if _, ok := svc.Port(listenerPort); !ok && len(svc.Ports) > 0 {
			port = svc.Ports[0].Number
		}
	}
	return g.Cluster(host, port, "")
}

// faultClass is a set of commands that get the same faults.
type faultClass struct {
	commands []string
	fault    *configv1alpha1.FaultInjection
}

// faultClasses turns Aeraki's fault list into per-command faults:
// for each command, the first DELAY fault and the first ERROR fault that
// cover it (by listing it, or by listing no command) apply. Commands with
// the same pair form a class; all is what every other command gets.
func faultClasses(faults []redisv1.Fault) ([]faultClass, *configv1alpha1.FaultInjection) {
	covers := func(f *redisv1.Fault, cmd string) bool {
		if len(f.Commands) == 0 {
			return true
		}
		for _, c := range f.Commands {
			if strings.EqualFold(c, cmd) {
				return true
			}
		}
		return false
	}
	pick := func(cmd string) [2]int {
		p := [2]int{-1, -1}
		for i := range faults {
			f := &faults[i]
			slot := 0
			if f.Type == redisv1.FaultError {
				slot = 1
			}
			if p[slot] < 0 && covers(f, cmd) {
				p[slot] = i
			}
		}
		return p
	}
	allPair := pick("") // only faults without commands cover ""
	var order [][2]int
	groups := map[[2]int][]string{}
	seen := map[string]bool{}
	for _, f := range faults {
		for _, c := range f.Commands {
			c = strings.ToUpper(c)
			if seen[c] {
				continue
			}
			seen[c] = true
			p := pick(c)
			if p == allPair {
				continue
			}
			if _, ok := groups[p]; !ok {
				order = append(order, p)
			}
			groups[p] = append(groups[p], c)
		}
	}
	var classes []faultClass
	for _, p := range order {
		classes = append(classes, faultClass{commands: groups[p], fault: faultInjection(faults, p)})
	}
	return classes, faultInjection(faults, allPair)
}

func faultInjection(faults []redisv1.Fault, p [2]int) *configv1alpha1.FaultInjection {
	if p[0] < 0 && p[1] < 0 {
		return nil
	}
	pct := func(f *redisv1.Fault) float64 {
		if f.Percentage == nil {
			return 100
		}
		return f.Percentage.Value
	}
	fi := &configv1alpha1.FaultInjection{}
	if p[0] >= 0 {
		f := &faults[p[0]]
		fi.Delay = &configv1alpha1.FaultInjection_Delay{FixedDelay: durationpb.New(f.Delay.Duration), Percentage: pct(f)}
	}
	if p[1] >= 0 {
		f := &faults[p[1]]
		fi.Abort = &configv1alpha1.FaultInjection_Abort{Status: "fault", Percentage: pct(f)}
		// An ERROR fault's own delay applies when no DELAY fault does.
		if fi.Delay == nil && f.Delay != nil && f.Delay.Duration > 0 {
			fi.Delay = &configv1alpha1.FaultInjection_Delay{FixedDelay: durationpb.New(f.Delay.Duration), Percentage: pct(f)}
		}
	}
	return fi
}

// PatchCluster applies the RedisDestination of host to one of
// its clusters: TCP settings, a ring hash for pools hashed by key, and
// discoveryEndpoints in place of the service's endpoints.
func (r *part) PatchCluster(ix *controller.Index, c *clusterv3.Cluster, cla *endpointv3.ClusterLoadAssignment, host string, _ uint32) {
	rd := r.dests[host]
	if rd == nil {
		return
	}
	pool := rd.Pool()
	if t := pool.TCP; t != nil {
		if t.ConnectTimeout != nil && t.ConnectTimeout.Duration > 0 {
			c.ConnectTimeout = durationpb.New(t.ConnectTimeout.Duration)
		}
		if t.MaxConnections > 0 {
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxConnections: wrapperspb.UInt32(uint32(t.MaxConnections))}}}
		}
	}
	rs := rd.Redis()
	if rs.HashByKey {
		c.LbPolicy = clusterv3.Cluster_RING_HASH
	}
	if len(rs.DiscoveryEndpoints) == 0 {
		return
	}
	var lbs []*endpointv3.LbEndpoint
	for _, e := range rs.DiscoveryEndpoints {
		hp, err := redisv1.SplitEndpoint(e)
		if err != nil {
			continue
		}
		addrs := []string{hp.Host}
		if net.ParseIP(hp.Host) == nil {
			if addrs, err = ix.Resolve(context.Background(), hp.Host); err != nil {
				continue
			}
			sort.Strings(addrs)
		}
		for _, a := range addrs {
			lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(a, hp.Port)}}})
		}
	}
	cla.Endpoints = nil
	if len(lbs) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}
	}
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
