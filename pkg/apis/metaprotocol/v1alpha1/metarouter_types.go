package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rosetta-mesh/rosetta/pkg/apis/fielderrors"
)

// MetaRouter routes the requests of MetaProtocol services (Dubbo, Thrift,
// tRPC, ...) on their attributes: which method, interface or header a call
// carries decides where it goes. Like Aeraki's MetaRouter it is mesh-scoped:
// whatever its namespace, it applies to the services named in hosts, for the
// namespaces it is exported to.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mr,categories=rosetta
// +kubebuilder:printcolumn:name="Hosts",type=string,JSONPath=`.spec.hosts`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MetaRouter struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the routing policy.
	Spec MetaRouterSpec `json:"spec"`
	// Status tells whether the controller accepted the spec.
	// +optional
	Status MetaRouterStatus `json:"status,omitempty"`
}

// MetaRouterSpec is the routing policy of one or more MetaProtocol services.
type MetaRouterSpec struct {
	// Hosts are the services these routes apply to: fully qualified names
	// such as "greeter.demo.svc.cluster.local", or a ServiceEntry host.
	// Aeraki honours only the first host; Rosetta honours all of them.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	Hosts []string `json:"hosts"`

	// Gateways names the gateways and sidecars that apply these routes, as in
	// Istio's VirtualService: "mesh" (every proxy's own listeners; the
	// default when empty), or an Istio Gateway as "name" (in this
	// MetaRouter's namespace) or "namespace/name". The proxies the
	// Gateway's selector picks in its namespace get a listener per server
	// port (plaintext, or Istio mTLS for tls mode ISTIO_MUTUAL) serving
	// these routes for a host the server's hosts allow; a server port
	// serves the oldest MetaRouter bound to it, since MetaProtocol calls
	// carry no host name. Listing a Gateway without "mesh" takes the
	// routes off the mesh's proxies, as in Istio.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=317
	Gateways []string `json:"gateways,omitempty"`

	// Routes is the ordered list of routes; the first that matches a request
	// is used. Requests no route matches are answered with the protocol's
	// "no route" error.
	// +optional
	// +kubebuilder:validation:MaxItems=128
	Routes []MetaRoute `json:"routes,omitempty"`

	// LocalRateLimit is Aeraki's service-wide rate limit: token buckets
	// shared by every route of each service port, in each proxy (so n
	// proxies admit n times the rate). It applies before a route's own
	// localRateLimit.
	// +optional
	LocalRateLimit *LocalRateLimit `json:"localRateLimit,omitempty"`

	// GlobalRateLimit asks an Envoy rate limit service
	// (envoy.service.ratelimit.v3) about every request it matches, so one
	// limit holds across all proxies.
	// +optional
	GlobalRateLimit *GlobalRateLimit `json:"globalRateLimit,omitempty"`

	// ExportTo lists the namespaces whose proxies see this MetaRouter. "."
	// is the MetaRouter's own namespace and "*" every namespace (the default).
	// +optional
	// +kubebuilder:validation:MaxItems=64
	ExportTo []string `json:"exportTo,omitempty"`
}

// MetaRoute is one route: match conditions and what to do with the requests
// that meet them.
//
// +kubebuilder:validation:XValidation:rule="!has(self.route) || self.route.size() <= 1 || self.route.map(d, has(d.weight) ? d.weight : 0).sum() == 100",message="the weights of a route's destinations must add up to 100"
type MetaRoute struct {
	// Name shows up in metrics, access logs and config dumps.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name,omitempty"`

	// Match holds the conditions, all of which must hold; an empty match
	// matches every request.
	// +optional
	Match *MetaRouteMatch `json:"match,omitempty"`

	// Route is where matching requests go: one destination, or several split
	// by weight.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Route []MetaRouteDestination `json:"route,omitempty"`

	// Mirror sends a copy of matching requests to another destination; its
	// answers are dropped.
	// +optional
	Mirror *Destination `json:"mirror,omitempty"`

	// MirrorPercentage is the share of matching requests that are mirrored;
	// 100 when absent.
	// +optional
	MirrorPercentage *Percent `json:"mirrorPercentage,omitempty"`

	// RequestMutation sets attributes on the request before it goes upstream;
	// what a key means is up to the protocol's codec.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	RequestMutation []KeyValue `json:"requestMutation,omitempty"`

	// ResponseMutation sets attributes on the response before it goes back.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	ResponseMutation []KeyValue `json:"responseMutation,omitempty"`

	// Timeout is how long the upstream has to answer (all tries included);
	// after it the caller gets the protocol's timeout error. No timeout when
	// absent. (Rosetta extension.)
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Retries retries failed requests. (Rosetta extension.)
	// +optional
	Retries *Retries `json:"retries,omitempty"`

	// Fault injects delays and errors, for testing how callers cope.
	// (Rosetta extension.)
	// +optional
	Fault *Fault `json:"fault,omitempty"`

	// HashPolicy names the request attributes whose values pick the endpoint
	// when the destination's DestinationRule asks for a consistent hash load
	// balancer (ringHash or maglev). (Rosetta extension.)
	// +optional
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MinLength=1
	HashPolicy []string `json:"hashPolicy,omitempty"`

	// LocalRateLimit is a token bucket for this route, in each proxy.
	// (Rosetta extension.)
	// +optional
	LocalRateLimit *TokenBucket `json:"localRateLimit,omitempty"`
}

// MetaRouteMatch is an AND of attribute conditions.
type MetaRouteMatch struct {
	// Attributes maps an attribute name ("interface", "method", an
	// attachment or header key) to how its value must look. A condition with
	// neither exact, prefix nor regex only requires the attribute to be
	// present.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Attributes map[string]StringMatch `json:"attributes,omitempty"`
}

// StringMatch matches a string; at most one of exact, prefix and regex.
// Matching is case-sensitive.
//
// +kubebuilder:validation:XValidation:rule="(has(self.exact) ? 1 : 0) + (has(self.prefix) ? 1 : 0) + (has(self.regex) ? 1 : 0) <= 1",message="set at most one of exact, prefix and regex"
type StringMatch struct {
	// Exact is the whole value.
	// +optional
	Exact *string `json:"exact,omitempty"`
	// Prefix is the start of the value.
	// +optional
	Prefix *string `json:"prefix,omitempty"`
	// Regex is an RE2 expression matched against the whole value.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Regex *string `json:"regex,omitempty"`
}

// MetaRouteDestination is one destination of a route and its share.
type MetaRouteDestination struct {
	// Destination is the service (and subset) that gets the requests.
	Destination Destination `json:"destination"`
	// Weight is the share of requests, 0 to 100; the weights of a route's
	// destinations add up to 100. A route's only destination gets 100.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight,omitempty"`
}

// Destination names a service, and optionally a subset and a port of it.
type Destination struct {
	// Host is a service from the registry: a Kubernetes Service
	// ("name.namespace.svc.cluster.local"; a short name is taken relative to
	// the MetaRouter's namespace) or a ServiceEntry host.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host"`
	// Subset is a subset defined in the host's DestinationRule.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Subset string `json:"subset,omitempty"`
	// Port picks the service port; needed only when the host has more than
	// one MetaProtocol port and it differs from the caller's.
	// +optional
	Port *PortSelector `json:"port,omitempty"`
}

// PortSelector selects a port by number.
type PortSelector struct {
	// Number is the port number.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Number uint32 `json:"number"`
}

// KeyValue is one attribute to set.
type KeyValue struct {
	// Key is the attribute's name.
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
	// Value is the attribute's new value.
	Value string `json:"value"`
}

// Percent is a percentage, 0 to 100.
type Percent struct {
	// Value is the percentage.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Value float64 `json:"value"`
}

// Retries is a route's retry policy.
type Retries struct {
	// Attempts is how many times a failed request is retried after the first
	// try.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	Attempts int32 `json:"attempts"`
	// PerTryTimeout bounds each try; the route's timeout bounds all of them.
	// +optional
	PerTryTimeout *metav1.Duration `json:"perTryTimeout,omitempty"`
	// RetryOn lists, comma separated, the failures that are retried:
	// connect-failure (the connection could not be made; one retry is
	// always made, as the request never left), reset (the connection
	// closed with the request in flight), timeout (perTryTimeout passed),
	// unavailable (the endpoint picked could not take the request: its
	// connection's pending requests were full). Default:
	// connect-failure,unavailable. A DestinationRule's retryBudget (or
	// connectionPool.http.maxRetries, 3 by default) caps the retries in
	// flight to the service.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.split(',').all(c, c.trim() in ['connect-failure', 'reset', 'timeout', 'unavailable'])",message="retryOn conditions are connect-failure, reset, timeout and unavailable"
	RetryOn string `json:"retryOn,omitempty"`
}

// Fault injects delays and aborts into a share of a route's requests.
//
// +kubebuilder:validation:XValidation:rule="has(self.delay) || has(self.abort)",message="set delay, abort or both"
type Fault struct {
	// Delay holds requests back before they are forwarded.
	// +optional
	Delay *FaultDelay `json:"delay,omitempty"`
	// Abort answers requests with an error instead of forwarding them.
	// +optional
	Abort *FaultAbort `json:"abort,omitempty"`
}

// FaultDelay delays a share of requests.
type FaultDelay struct {
	// FixedDelay is how long a request is held.
	FixedDelay metav1.Duration `json:"fixedDelay"`
	// Percentage of requests delayed; 100 when absent.
	// +optional
	Percentage *Percent `json:"percentage,omitempty"`
}

// FaultAbort answers a share of requests with an error.
type FaultAbort struct {
	// Status is the error, in protocol-neutral terms; each codec maps it to
	// its own error reply.
	// +kubebuilder:validation:Enum=unavailable;timeout;rate_limited;fault
	Status string `json:"status"`
	// Percentage of requests aborted; 100 when absent.
	// +optional
	Percentage *Percent `json:"percentage,omitempty"`
}

// TokenBucket is a token bucket rate limit.
type TokenBucket struct {
	// MaxTokens is the bucket size, and how full it starts.
	// +kubebuilder:validation:Minimum=1
	MaxTokens uint32 `json:"maxTokens"`
	// TokensPerFill is how many tokens each fill adds; 1 when absent.
	// +optional
	// +kubebuilder:validation:Minimum=1
	TokensPerFill *uint32 `json:"tokensPerFill,omitempty"`
	// FillInterval is the time between fills.
	FillInterval metav1.Duration `json:"fillInterval"`
}

// LocalRateLimit is Aeraki's service-wide rate limit. A request takes a
// token from the bucket of the first condition it matches, else from
// tokenBucket; without tokenBucket, requests no condition matches are not
// limited. Set tokenBucket, conditions or both.
type LocalRateLimit struct {
	// TokenBucket limits the requests no condition matches.
	// +optional
	TokenBucket *TokenBucket `json:"tokenBucket,omitempty"`
	// Conditions are buckets for more specific requests; the first match wins.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Conditions []LocalRateLimitCondition `json:"conditions,omitempty"`
}

// LocalRateLimitCondition is a bucket for the requests that match.
type LocalRateLimitCondition struct {
	// Match selects the requests.
	Match MetaRouteMatch `json:"match"`
	// TokenBucket limits them.
	TokenBucket TokenBucket `json:"tokenBucket"`
}

// GlobalRateLimit is Aeraki's call to an external rate limit service: for
// each request that meets match, the proxy calls the service's
// RateLimitService/ShouldRateLimit (gRPC, Envoy's
// envoy.service.ratelimit.v3) with the domain and one descriptor whose
// entries, in the order given, take their values from request attributes,
// and answers the protocol's "rate limited" error when the service says
// OVER_LIMIT. A request missing one of those attributes is not limited.
type GlobalRateLimit struct {
	// Match selects the requests that are rate limited; all of them when
	// absent.
	// +optional
	Match *MetaRouteMatch `json:"match,omitempty"`
	// Domain is the rate limit domain of the service's config.
	// +kubebuilder:validation:MinLength=1
	Domain string `json:"domain"`
	// RequestTimeout bounds each call to the rate limit service; 20ms when
	// absent (Aeraki's and Envoy's default). A late answer counts as a
	// failure.
	// +optional
	RequestTimeout *metav1.Duration `json:"requestTimeout,omitempty"`
	// DenyOnFail refuses requests (with the "rate limited" error) when the
	// service fails or is late; when false they pass.
	// +optional
	DenyOnFail bool `json:"denyOnFail,omitempty"`
	// RateLimitService is where the service listens: Istio's cluster name
	// for it, as Aeraki takes it ("outbound|8081||ratelimit.infra.svc.cluster.local"),
	// or "host:port". The proxy calls it over plaintext gRPC.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=320
	RateLimitService string `json:"rateLimitService"`
	// Descriptors are the entries of the descriptor sent, in order: each
	// entry's key and the request attribute its value comes from.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Descriptors []GlobalRateLimitDescriptor `json:"descriptors"`
}

// GlobalRateLimitDescriptor maps a request attribute to a descriptor key.
type GlobalRateLimitDescriptor struct {
	// Property is the request attribute ("method", "interface", an
	// attachment or header key) whose value the entry takes.
	// +kubebuilder:validation:MinLength=1
	Property string `json:"property"`
	// DescriptorKey is the entry's key, as the service's config names it.
	// +kubebuilder:validation:MinLength=1
	DescriptorKey string `json:"descriptorKey"`
}

// MetaRouterStatus is what the controller made of a MetaRouter.
type MetaRouterStatus struct {
	// ObservedGeneration is the generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Accepted (the spec is valid and in force; when false, the
	// reason and message name the offending field and proxies keep the last
	// accepted version; reason HostConflict when an older MetaRouter routes
	// a host, or serves a Gateway's server port, it names), ResolvedRefs
	// (every destination host and subset, and every Gateway, exists), and,
	// only while proxies refuse (NACK) the config that carries it,
	// Programmed=False (reason RefusedByProxy) naming the proxies, the
	// version and their reason; they keep the config they had.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// MetaRouterList is a list of MetaRouters.
//
// +kubebuilder:object:root=true
type MetaRouterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MetaRouter `json:"items"`
}

// Condition types and reasons of a MetaRouter's status.
const (
	ConditionAccepted     = "Accepted"
	ConditionResolvedRefs = "ResolvedRefs"
	// ConditionProgrammed is present, False, while proxies refuse (NACK)
	// the config that carries the MetaRouter; its message names them and
	// their reasons. They keep serving the config they had.
	ConditionProgrammed = "Programmed"

	ReasonAccepted     = "Accepted"
	ReasonInvalid      = fielderrors.Invalid
	ReasonUnsupported  = fielderrors.Unsupported
	ReasonConflict     = "HostConflict"
	ReasonResolved     = "ResolvedRefs"
	ReasonUnknownHost  = "UnknownHost"
	ReasonUnknownSubet = "UnknownSubset"
	ReasonRefused      = "RefusedByProxy"
)
