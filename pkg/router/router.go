// Package router compiles a RouteConfiguration into a table that matches
// decoded messages: the first route whose conditions all hold wins.
package router

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"time"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Table is a compiled RouteConfiguration.
type Table struct {
	Name   string
	Routes []*Route
}

// Route is one compiled route.
type Route struct {
	Name   string
	conds  []condition
	Action Action
}

// Action is what happens to a request a route matched.
type Action struct {
	// Cluster is set for a single-cluster route.
	Cluster string
	// Weighted is set for a weighted split; total is the sum of the weights.
	Weighted []WeightedCluster
	total    uint32
	// Timeout bounds the whole request, retries included; 0 means none.
	Timeout          time.Duration
	HashAttributes   []string
	RequestMutation  []codec.Attr
	ResponseMutation []codec.Attr
	Retry            Retry
	Fault            *Fault
	Mirrors          []Mirror
	RateLimit        *TokenBucket
	// ServiceLimit is the route configuration's local rate limit, shared
	// by all its routes; nil when it has none.
	ServiceLimit *ServiceLimit
	// GlobalLimit asks a rate limit service; nil when the route does not.
	GlobalLimit *GlobalLimit
}

// WeightedCluster is one arm of a weighted split.
type WeightedCluster struct {
	Name   string
	Weight uint32
}

// Retry says when a failed try is tried again on another endpoint.
type Retry struct {
	Attempts      int
	PerTryTimeout time.Duration
	On            RetryOn
}

// RetryOn is a set of retry conditions.
type RetryOn uint8

// Retry conditions.
const (
	RetryConnectFailure RetryOn = 1 << iota
	RetryReset
	RetryTimeout
	RetryUnavailable
)

var retryNames = map[string]RetryOn{
	"connect-failure": RetryConnectFailure,
	"reset":           RetryReset,
	"timeout":         RetryTimeout,
	"unavailable":     RetryUnavailable,
}

// Fault is an injected delay and/or abort.
type Fault struct {
	Delay        time.Duration
	DelayPercent float64
	Abort        codec.Status
	AbortPercent float64
}

// Mirror copies matched requests to a cluster.
type Mirror struct {
	Cluster string
	Percent float64
}

type condition struct {
	name    string
	exact   string
	prefix  string
	re      *regexp.Regexp
	kind    uint8
	invert  bool
	present bool
}

const (
	condExact uint8 = iota
	condPrefix
	condRegex
	condPresent
)

func (c *condition) holds(m *codec.Message) bool {
	v, ok := m.Get(c.name)
	var r bool
	switch c.kind {
	case condExact:
		r = ok && v == c.exact
	case condPrefix:
		r = ok && strings.HasPrefix(v, c.prefix)
	case condRegex:
		r = ok && c.re.MatchString(v)
	case condPresent:
		r = ok == c.present
	}
	return r != c.invert
}

// Match returns the first route that matches m, or nil.
func (t *Table) Match(m *codec.Message) *Route {
	for _, r := range t.Routes {
		if r.matches(m) {
			return r
		}
	}
	return nil
}

func (r *Route) matches(m *codec.Message) bool { return all(r.conds, m) }

// all reports whether every condition holds for m.
func all(conds []condition, m *codec.Message) bool {
	for i := range conds {
		if !conds[i].holds(m) {
			return false
		}
	}
	return true
}

// AllowLocal takes a token from the service's bucket that applies to m,
// then from the route's own; false when either is empty.
func (a *Action) AllowLocal(m *codec.Message, now time.Time) bool {
	return a.ServiceLimit.Allow(m, now) && (a.RateLimit == nil || a.RateLimit.Allow(now))
}

// PickCluster returns the cluster for one request: the single cluster, or a
// weighted pick.
func (a *Action) PickCluster() string {
	if a.Cluster != "" || a.total == 0 {
		return a.Cluster
	}
	n := rand.Uint32N(a.total)
	for _, w := range a.Weighted {
		if n < w.Weight {
			return w.Name
		}
		n -= w.Weight
	}
	return a.Weighted[len(a.Weighted)-1].Name
}

// Clusters lists every cluster the action may send to, mirrors included.
func (a *Action) Clusters() []string {
	var out []string
	if a.Cluster != "" {
		out = append(out, a.Cluster)
	}
	for _, w := range a.Weighted {
		out = append(out, w.Name)
	}
	for _, m := range a.Mirrors {
		out = append(out, m.Cluster)
	}
	return out
}

// Chance reports true with the given percentage (0-100).
func Chance(percent float64) bool {
	return percent >= 100 || (percent > 0 && rand.Float64()*100 < percent)
}

// Compile checks and compiles a RouteConfiguration. Errors name the field.
func Compile(rc *configv1alpha1.RouteConfiguration) (*Table, error) {
	t := &Table{Name: rc.GetName()}
	limit, err := compileServiceLimit(rc.GetLocalRateLimit())
	if err != nil {
		return nil, fmt.Errorf("route config %q: %w", rc.GetName(), err)
	}
	for i, r := range rc.GetRoutes() {
		cr, err := compileRoute(r)
		if err != nil {
			return nil, fmt.Errorf("route config %q: routes[%d] (%s): %w", rc.GetName(), i, r.GetName(), err)
		}
		cr.Action.ServiceLimit = limit
		t.Routes = append(t.Routes, cr)
	}
	return t, nil
}

func compileRoute(r *configv1alpha1.Route) (*Route, error) {
	out := &Route{Name: r.GetName()}
	var err error
	if out.conds, err = compileMatch(r.GetMatch()); err != nil {
		return nil, fmt.Errorf("match.%w", err)
	}
	act, err := compileAction(r.GetRoute())
	if err != nil {
		return nil, fmt.Errorf("route.%w", err)
	}
	out.Action = act
	return out, nil
}

// compileMatch compiles an AND of conditions; errors start with the
// field under the match ("attributes[0]...").
func compileMatch(m *configv1alpha1.RouteMatch) ([]condition, error) {
	var out []condition
	for i, a := range m.GetAttributes() {
		c, err := compileCondition(a)
		if err != nil {
			return nil, fmt.Errorf("attributes[%d]: %w", i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func compileCondition(a *configv1alpha1.AttributeMatch) (condition, error) {
	c := condition{name: a.GetName(), invert: a.GetInvert()}
	if c.name == "" {
		return c, fmt.Errorf("name: must not be empty")
	}
	switch m := a.GetMatch().(type) {
	case *configv1alpha1.AttributeMatch_Exact:
		c.kind, c.exact = condExact, m.Exact
	case *configv1alpha1.AttributeMatch_Prefix:
		c.kind, c.prefix = condPrefix, m.Prefix
	case *configv1alpha1.AttributeMatch_Regex:
		re, err := regexp.Compile("^(?:" + m.Regex + ")$")
		if err != nil {
			return c, fmt.Errorf("regex: %w", err)
		}
		c.kind, c.re = condRegex, re
	case *configv1alpha1.AttributeMatch_Present:
		c.kind, c.present = condPresent, m.Present
	default:
		return c, fmt.Errorf("one of exact, prefix, regex or present is required")
	}
	return c, nil
}

func compileAction(a *configv1alpha1.RouteAction) (Action, error) {
	var act Action
	if a == nil {
		return act, fmt.Errorf("route: a cluster or weighted_clusters is required")
	}
	switch {
	case a.GetCluster() != "":
		act.Cluster = a.GetCluster()
	case len(a.GetWeightedClusters().GetClusters()) > 0:
		for i, w := range a.GetWeightedClusters().GetClusters() {
			if w.GetName() == "" {
				return act, fmt.Errorf("weighted_clusters.clusters[%d].name: must not be empty", i)
			}
			act.Weighted = append(act.Weighted, WeightedCluster{Name: w.GetName(), Weight: w.GetWeight()})
			act.total += w.GetWeight()
		}
		if act.total == 0 {
			return act, fmt.Errorf("weighted_clusters: the weights sum to 0")
		}
	default:
		return act, fmt.Errorf("cluster: a cluster or weighted_clusters is required")
	}
	act.Timeout = a.GetTimeout().AsDuration()
	for _, h := range a.GetHashPolicy() {
		act.HashAttributes = append(act.HashAttributes, h.GetAttributes()...)
	}
	act.RequestMutation = attrs(a.GetRequestMutation())
	act.ResponseMutation = attrs(a.GetResponseMutation())
	var err error
	if act.Retry, err = compileRetry(a.GetRetryPolicy()); err != nil {
		return act, err
	}
	if act.Fault, err = compileFault(a.GetFault()); err != nil {
		return act, err
	}
	if act.Mirrors, err = compileMirrors(a.GetMirror()); err != nil {
		return act, err
	}
	if act.RateLimit, err = compileRateLimit(a.GetLocalRateLimit()); err != nil {
		return act, err
	}
	if act.GlobalLimit, err = compileGlobalLimit(a.GetGlobalRateLimit()); err != nil {
		return act, err
	}
	return act, nil
}

func attrs(kvs []*configv1alpha1.KeyValue) []codec.Attr {
	var out []codec.Attr
	for _, kv := range kvs {
		out = append(out, codec.Attr{Key: kv.GetKey(), Value: kv.GetValue()})
	}
	return out
}

func compileRetry(p *configv1alpha1.RetryPolicy) (Retry, error) {
	r := Retry{Attempts: int(p.GetNumRetries()), PerTryTimeout: p.GetPerTryTimeout().AsDuration()}
	for i, on := range p.GetRetryOn() {
		bit, ok := retryNames[on]
		if !ok {
			return r, fmt.Errorf("retry_policy.retry_on[%d]: unknown condition %q (want connect-failure, reset, timeout or unavailable)", i, on)
		}
		r.On |= bit
	}
	if r.Attempts > 10 {
		return r, fmt.Errorf("retry_policy.num_retries: %d is more than the limit of 10", r.Attempts)
	}
	if r.Attempts > 0 && r.On == 0 {
		r.On = RetryConnectFailure | RetryUnavailable
	}
	return r, nil
}

// AbortStatuses are the status names a fault abort may use.
var AbortStatuses = map[string]codec.Status{
	"unavailable":  codec.StatusNoUpstream,
	"timeout":      codec.StatusTimeout,
	"rate_limited": codec.StatusRateLimited,
	"fault":        codec.StatusFault,
	"overloaded":   codec.StatusOverloaded,
}

func compileFault(f *configv1alpha1.FaultInjection) (*Fault, error) {
	if f == nil {
		return nil, nil
	}
	out := &Fault{}
	if d := f.GetDelay(); d != nil {
		if err := checkPercent("fault.delay.percentage", d.GetPercentage()); err != nil {
			return nil, err
		}
		out.Delay, out.DelayPercent = d.GetFixedDelay().AsDuration(), d.GetPercentage()
	}
	if a := f.GetAbort(); a != nil {
		if err := checkPercent("fault.abort.percentage", a.GetPercentage()); err != nil {
			return nil, err
		}
		st, ok := AbortStatuses[a.GetStatus()]
		if !ok {
			return nil, fmt.Errorf("fault.abort.status: unknown status %q", a.GetStatus())
		}
		out.Abort, out.AbortPercent = st, a.GetPercentage()
	}
	return out, nil
}

func compileMirrors(ms []*configv1alpha1.MirrorPolicy) ([]Mirror, error) {
	var out []Mirror
	for i, m := range ms {
		if m.GetCluster() == "" {
			return nil, fmt.Errorf("mirror[%d].cluster: must not be empty", i)
		}
		if err := checkPercent(fmt.Sprintf("mirror[%d].percentage", i), m.GetPercentage()); err != nil {
			return nil, err
		}
		out = append(out, Mirror{Cluster: m.GetCluster(), Percent: m.GetPercentage()})
	}
	return out, nil
}

func checkPercent(field string, p float64) error {
	if p < 0 || p > 100 {
		return fmt.Errorf("%s: %v is not between 0 and 100", field, p)
	}
	return nil
}
