package controller

// The Redis translation (RedisService and RedisDestination, group
// redis.rosetta.dev or Aeraki's redis.aeraki.io):
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
//     (redisReadCommands), without that mirror, goes ahead of the route.
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
	"sort"
	"strings"
	"sync"
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
	redisv1 "github.com/rosetta-mesh/rosetta/pkg/apis/redis/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// The redis codec's name, attributes, mutation and options
// (protocols/redis/README.md).
const (
	redisCodec           = "redis"
	redisAttrKey         = "key"
	redisAttrCommand     = "command"
	redisAttrHashKey     = "hash_key"
	redisStripPrefix     = "redis.strip_prefix"
	redisOptMode         = "mode"
	redisOptReadPolicy   = "read_policy"
	redisOptPassword     = "password"
	redisOptUsername     = "username"
	redisOptUpPassword   = "upstream_password"
	redisOptUpUsername   = "upstream_username"
	defaultPasswordKey   = "password"
	defaultUsernameKey   = "username"
	redisServiceKind     = "RedisService"
	redisDestinationKind = "RedisDestination"
)

// redisIndex is the Redis part of an Index: the RedisService and the
// RedisDestination in force for each host, the Secrets they may name, and
// the status of every Redis object.
type redisIndex struct {
	services map[string]*redisv1.RedisService
	dests    map[string]*redisv1.RedisDestination
	secrets  map[string]*corev1.Secret
	// statuses by "<Kind>/<namespace>/<name>".
	statuses map[string]RouterStatus
}

// redisMemory remembers the last valid version of every Redis object, so
// that an invalid update leaves the previous one in force.
type redisMemory struct {
	mu       sync.Mutex
	services map[string]*redisv1.RedisService
	dests    map[string]*redisv1.RedisDestination
}

// RedisStatuses is the status each RedisService and RedisDestination
// should have, by "<Kind>/<namespace>/<name>".
func (ix *Index) RedisStatuses() map[string]RouterStatus {
	if ix.redis == nil {
		return nil
	}
	return ix.redis.statuses
}

// buildRedis indexes the Redis objects of in; ix's services are indexed.
func (b *Builder) buildRedis(ix *Index, in *Inputs) {
	r := &redisIndex{
		services: map[string]*redisv1.RedisService{},
		dests:    map[string]*redisv1.RedisDestination{},
		secrets:  map[string]*corev1.Secret{},
		statuses: map[string]RouterStatus{},
	}
	ix.redis = r
	for _, s := range in.Secrets {
		// A TLS Secret (a Gateway's credential) is a Redis credential
		// only when labelled so.
		if s.Type != corev1.SecretTypeTLS || s.Labels[RedisCredentialsLabel] == "true" {
			r.secrets[key(s)] = s
		}
		ix.secrets[key(s)] = s
	}
	m := &b.redis
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.services == nil {
		m.services = map[string]*redisv1.RedisService{}
		m.dests = map[string]*redisv1.RedisDestination{}
	}
	svcs := inForce(slicesClone(in.RedisServices), m.services, r.statuses, redisServiceKind+"/")
	dests := inForce(slicesClone(in.RedisDestinations), m.dests, r.statuses, redisDestinationKind+"/")

	claims := map[string]string{} // host -> key of the object that has it
	for _, rs := range svcs {
		var lost []string
		for i, h := range rs.Spec.Host {
			q := ix.qualify(h, rs.Namespace)
			if w, ok := claims[q]; ok && w != key(rs) {
				lost = append(lost, fmt.Sprintf("spec.host[%d]: %s is routed by the older RedisService %s", i, q, w))
				continue
			}
			claims[q] = key(rs)
			r.services[q] = rs
		}
		r.setConditions(redisServiceKind, rs, len(lost) == len(rs.Spec.Host), lost, ix.redisServiceRefs(rs))
	}
	for _, rd := range dests {
		q := ix.qualify(rd.Spec.Host, rd.Namespace)
		var lost []string
		if w, ok := r.dests[q]; ok {
			lost = append(lost, fmt.Sprintf("spec.host: %s is described by the older RedisDestination %s", q, key(w)))
		} else {
			r.dests[q] = rd
		}
		var missing []string
		if a := rd.Redis().Auth; a != nil {
			if _, _, err := r.credentials(rd.Namespace, a); err != nil {
				missing = append(missing, "spec.trafficPolicy.connectionPool.redis.auth: "+err.Error())
			}
		}
		r.setConditions(redisDestinationKind, rd, len(lost) > 0, lost, missing)
	}
}

func slicesClone[T any](s []T) []T { return append([]T(nil), s...) }

// setConditions records Accepted and ResolvedRefs for an object in force,
// unless it is invalid now (its status already says so).
func (r *redisIndex) setConditions(kind string, o validated, lostAll bool, lost, missing []string) {
	k := kind + "/" + key(o)
	if _, invalid := r.statuses[k]; invalid {
		return
	}
	gen := o.GetGeneration()
	acc := cond(redisv1.ConditionAccepted, true, redisv1.ReasonAccepted, "in force", gen)
	switch {
	case lostAll:
		acc = cond(redisv1.ConditionAccepted, false, redisv1.ReasonConflict, strings.Join(lost, "; "), gen)
	case len(lost) > 0:
		acc = cond(redisv1.ConditionAccepted, true, redisv1.ReasonConflict, "in force for its other hosts; "+strings.Join(lost, "; "), gen)
	}
	refs := cond(redisv1.ConditionResolvedRefs, true, redisv1.ReasonResolved, "every reference exists", gen)
	if len(missing) > 0 {
		reason := redisv1.ReasonUnknownHost
		if strings.Contains(missing[0], "Secret") {
			reason = redisv1.ReasonUnknownSecret
		}
		refs = cond(redisv1.ConditionResolvedRefs, false, reason, strings.Join(missing, "; "), gen)
	}
	r.statuses[k] = RouterStatus{Generation: gen, Conditions: []metav1.Condition{acc, refs}}
}

// redisServiceRefs lists the destinations and Secrets a RedisService
// names that do not exist.
func (ix *Index) redisServiceRefs(rs *redisv1.RedisService) []string {
	var missing []string
	if s := rs.Spec.Settings; s != nil && s.Auth != nil {
		if _, _, err := ix.redis.credentials(rs.Namespace, s.Auth); err != nil {
			missing = append(missing, "spec.settings.auth: "+err.Error())
		}
	}
	check := func(p string, d *redisv1.Destination) {
		h := ix.qualify(d.Host, rs.Namespace)
		if _, ok := ix.services[h]; !ok {
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
func (r *redisIndex) credentials(ns string, a *redisv1.Auth) (user, pass string, err error) {
	if p := a.Plain; p != nil {
		return p.Username, p.Password, nil
	}
	ref := a.Secret
	if ref == nil {
		return "", "", fmt.Errorf("no credentials")
	}
	s := r.secrets[ns+"/"+ref.Name]
	if s == nil {
		return "", "", fmt.Errorf("no Secret %s/%s the controller may read (in Kubernetes it needs the label %s: \"true\", and its name in the chart's redisCredentials value)", ns, ref.Name, RedisCredentialsLabel)
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
func (r *redisIndex) passwordSecret(owner, ns string, a *redisv1.Auth) (string, *tlsv3.Secret, error) {
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

// addSecret adds a Secret to the proxy's resources once (listeners may
// share one) and returns its name.
func (g *generation) addSecret(s *tlsv3.Secret) string {
	for _, have := range g.res.Secrets {
		if have.GetName() == s.GetName() {
			return s.GetName()
		}
	}
	g.res.Secrets = append(g.res.Secrets, s)
	return s.GetName()
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
func (r *redisIndex) listenerDestination(host string, routes []redisv1.Route, qualify func(string) string) *redisv1.RedisDestination {
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

// redisOptions are the codec options of a Redis listener: the port's
// protocol's options, then the RedisDestination's (mode, upstream auth,
// read policy), then the RedisService's settings (read policy, the
// password clients must give). Other codecs' options pass unchanged.
func (g *generation) redisOptions(svc *Service, port Port) map[string]string {
	if port.Protocol.Codec != redisCodec || g.ix.redis == nil {
		return port.Protocol.CodecOptions
	}
	r := g.ix.redis
	opts := maps.Clone(port.Protocol.CodecOptions)
	if opts == nil {
		opts = map[string]string{}
	}
	rs := r.services[svc.Host]
	var routes []redisv1.Route
	if rs != nil {
		routes = sortedRedisRoutes(rs.Spec.Redis)
	}
	qualify := func(h string) string { return g.ix.qualify(h, rs.Namespace) } // used only when rs != nil
	if rd := r.listenerDestination(svc.Host, catchAllFirst(routes), qualify); rd != nil {
		rset := rd.Redis()
		if rset.Mode == redisv1.ModeCluster {
			opts[redisOptMode] = "cluster"
		}
		if rset.ReadPolicy == redisv1.ReadPreferReplica {
			opts[redisOptReadPolicy] = "prefer_replica"
		}
		if a := rset.Auth; a != nil {
			if user, sec, err := r.passwordSecret(redisDestinationKind+"/"+key(rd), rd.Namespace, a); err == nil {
				setPassword(opts, redisOptUpPassword, g.addSecret(sec))
				if user != "" {
					opts[redisOptUpUsername] = user
				}
			}
		}
	}
	if rs != nil && rs.Spec.Settings != nil {
		s := rs.Spec.Settings
		switch s.ReadPolicy {
		case redisv1.ReadPreferReplica:
			opts[redisOptReadPolicy] = "prefer_replica"
		case redisv1.ReadMaster:
			delete(opts, redisOptReadPolicy)
		}
		if a := s.Auth; a != nil {
			if user, sec, err := r.passwordSecret(redisServiceKind+"/"+key(rs), rs.Namespace, a); err == nil {
				setPassword(opts, redisOptPassword, g.addSecret(sec))
				if user != "" {
					opts[redisOptUsername] = user
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

// sortedRedisRoutes orders routes by prefix, longest first, so that the
// proxy's first match is the longest prefix; the catch-all comes last.
func sortedRedisRoutes(routes []redisv1.Route) []redisv1.Route {
	out := slicesClone(routes)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Prefix(), out[j].Prefix()
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return a < b
	})
	return out
}

// redisRoutes are the routes of a Redis listener: from the host's
// RedisService, or, without one, a single route to the host (nil when a
// MetaRouter routes the host instead, or the port is not Redis).
func (g *generation) redisRoutes(svc *Service, port Port) []*configv1alpha1.Route {
	if port.Protocol.Codec != redisCodec || g.ix.redis == nil {
		return nil
	}
	rs := g.ix.redis.services[svc.Host]
	if rs == nil {
		if g.ix.router(svc.Host, g.proxy.Namespace) != nil {
			return nil
		}
		return []*configv1alpha1.Route{{
			Name:  "default",
			Match: &configv1alpha1.RouteMatch{},
			Route: &configv1alpha1.RouteAction{
				ClusterSpecifier: &configv1alpha1.RouteAction_Cluster{Cluster: g.cluster(svc.Host, port.Number, "")},
				HashPolicy:       []*configv1alpha1.HashPolicy{{Attributes: []string{redisAttrHashKey}}},
			},
		}}
	}
	classes, all := redisFaultClasses(rs.Spec.Faults)
	var timeout *durationpb.Duration
	if s := rs.Spec.Settings; s != nil && s.OpTimeout != nil && s.OpTimeout.Duration > 0 {
		timeout = durationpb.New(s.OpTimeout.Duration)
	}
	var out []*configv1alpha1.Route
	for _, rt := range sortedRedisRoutes(rs.Spec.Redis) {
		out = append(out, g.redisRouteSet(rs, &rt, port.Number, classes, all, timeout)...)
	}
	return out
}

// redisRouteSet translates one RedisService route. Faults by command and
// mirrors that exclude read commands need routes of their own, placed
// ahead of the route and matching the same key prefix plus the commands:
//
//	<name>/fault-<i>[/reads]  commands of fault class i (reads: without
//	                          the mirrors that exclude reads)
//	<name>/reads              read commands, without those mirrors
//	<name>                    every other command
func (g *generation) redisRouteSet(rs *redisv1.RedisService, rt *redisv1.Route, port uint32, classes []redisFaultClass, all *configv1alpha1.FaultInjection, timeout *durationpb.Duration) []*configv1alpha1.Route {
	prefix := rt.Prefix()
	name := "catch-all"
	if prefix != "" {
		name = "prefix:" + prefix
	}
	cluster := g.redisDestination(rs, rt.Route, port)
	var every, keep []*configv1alpha1.MirrorPolicy
	exclude := false
	for _, m := range rt.Mirror {
		mp := &configv1alpha1.MirrorPolicy{Cluster: g.redisDestination(rs, m.Route, port), Percentage: 100}
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
		mutation = []*configv1alpha1.KeyValue{{Key: redisStripPrefix, Value: prefix}}
	}
	mk := func(suffix string, cmds []string, mirrors []*configv1alpha1.MirrorPolicy, fault *configv1alpha1.FaultInjection) *configv1alpha1.Route {
		m := &configv1alpha1.RouteMatch{}
		if prefix != "" {
			m.Attributes = append(m.Attributes, &configv1alpha1.AttributeMatch{Name: redisAttrKey, Match: &configv1alpha1.AttributeMatch_Prefix{Prefix: prefix}})
		}
		if len(cmds) > 0 {
			m.Attributes = append(m.Attributes, &configv1alpha1.AttributeMatch{Name: redisAttrCommand, Match: &configv1alpha1.AttributeMatch_Regex{Regex: commandRegex(cmds)}})
		}
		return &configv1alpha1.Route{Name: name + suffix, Match: m, Route: &configv1alpha1.RouteAction{
			ClusterSpecifier: &configv1alpha1.RouteAction_Cluster{Cluster: cluster},
			Timeout:          timeout,
			HashPolicy:       []*configv1alpha1.HashPolicy{{Attributes: []string{redisAttrHashKey}}},
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
			if redisReadSet[cmd] {
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
		out = append(out, mk("/reads", redisReadCommands, keep, all))
	}
	return append(out, mk("", nil, every, all))
}

// redisDestination resolves a destination to a cluster: its port, else
// the listener's port when the host has it, else the host's first port.
func (g *generation) redisDestination(rs *redisv1.RedisService, d *redisv1.Destination, listenerPort uint32) string {
	host := g.ix.qualify(d.Host, rs.Namespace)
	port := listenerPort
	if d.Port != 0 {
		port = d.Port
	} else if svc := g.ix.services[host]; svc != nil {
		if _, ok := svc.Port(listenerPort); !ok && len(svc.Ports) > 0 {
			port = svc.Ports[0].Number
		}
	}
	return g.cluster(host, port, "")
}

// redisFaultClass is a set of commands that get the same faults.
type redisFaultClass struct {
	commands []string
	fault    *configv1alpha1.FaultInjection
}

// redisFaultClasses turns Aeraki's fault list into per-command faults:
// for each command, the first DELAY fault and the first ERROR fault that
// cover it (by listing it, or by listing no command) apply. Commands with
// the same pair form a class; all is what every other command gets.
func redisFaultClasses(faults []redisv1.Fault) ([]redisFaultClass, *configv1alpha1.FaultInjection) {
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
	var classes []redisFaultClass
	for _, p := range order {
		classes = append(classes, redisFaultClass{commands: groups[p], fault: faultInjection(faults, p)})
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

// applyRedisDestination applies the RedisDestination of host to one of
// its clusters: TCP settings, a ring hash for pools hashed by key, and
// discoveryEndpoints in place of the service's endpoints.
func (ix *Index) applyRedisDestination(c *clusterv3.Cluster, cla *endpointv3.ClusterLoadAssignment, host string, port uint32) {
	if ix.redis == nil {
		return
	}
	rd := ix.redis.dests[host]
	if rd == nil {
		return
	}
	if svc := ix.services[host]; svc != nil {
		if p, ok := svc.Port(port); !ok || p.Protocol.Codec != redisCodec {
			return
		}
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
			if addrs, err = ix.opts.Resolve(context.Background(), hp.Host); err != nil {
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

// addRedisObject decodes the kinds the Redis translation reads: the two
// Redis resources (Rosetta's group or Aeraki's) and Secrets.
func (in *Inputs) addRedisObject(group, kind string, doc []byte) (bool, error) {
	switch group + "/" + kind {
	case redisv1.GroupName + "/RedisService", redisv1.AerakiGroupName + "/RedisService":
		return true, decodeInto(doc, &in.RedisServices)
	case redisv1.GroupName + "/RedisDestination", redisv1.AerakiGroupName + "/RedisDestination":
		return true, decodeInto(doc, &in.RedisDestinations)
	case "/Secret":
		return true, decodeInto(doc, &in.Secrets)
	}
	return false, nil
}

func (in *Inputs) appendRedis(o *Inputs) {
	in.RedisServices = append(in.RedisServices, o.RedisServices...)
	in.RedisDestinations = append(in.RedisDestinations, o.RedisDestinations...)
	in.Secrets = append(in.Secrets, o.Secrets...)
}
