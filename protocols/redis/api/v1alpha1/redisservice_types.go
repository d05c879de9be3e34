package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RedisService routes the commands sent to a Redis service by key prefix:
// the longest matching prefix wins, a route without a prefix catches the
// rest. Routes may remove their prefix from the keys, mirror commands to
// other services, and faults may delay or fail commands.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rsvc,categories=rosetta
// +kubebuilder:printcolumn:name="Hosts",type=string,JSONPath=`.spec.host`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RedisService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the routing policy.
	Spec RedisServiceSpec `json:"spec"`
	// Status tells whether the controller accepted the spec.
	// +optional
	Status Status `json:"status,omitempty"`
}

// RedisServiceSpec is the routing policy of one or more Redis services.
//
// +kubebuilder:validation:XValidation:rule="self.redis.filter(r, !has(r.match) || !has(r.match.key) || !has(r.match.key.prefix) || r.match.key.prefix.size() == 0).size() <= 1",message="at most one catch-all route (a route without a key prefix)"
type RedisServiceSpec struct {
	// Host lists the services these routes apply to ("redis.demo.svc.cluster.local";
	// a short name is taken relative to the RedisService's namespace). The
	// name is Aeraki's: a list named in the singular.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	Host []string `json:"host"`

	// Settings apply to every client connection of the services.
	// +optional
	Settings *Settings `json:"settings,omitempty"`

	// Redis lists the routes. Their order does not matter: the longest
	// matching key prefix wins, and the route without a prefix (the
	// catch-all) takes keyless commands and keys no prefix matches.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=128
	Redis []Route `json:"redis"`

	// Faults delay or fail a share of commands, for testing how clients
	// cope. For each command, the first DELAY fault and the first ERROR fault
	// that cover it apply, each with its own percentage.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Faults []Fault `json:"faults,omitempty"`
}

// ReadPolicy is where read-only commands go.
// +kubebuilder:validation:Enum=MASTER;PREFER_MASTER;REPLICA;PREFER_REPLICA;ANY
type ReadPolicy string

// Read policies. Rosetta supports MASTER and, in cluster mode,
// PREFER_REPLICA; the others are Aeraki's and are refused in status.
const (
	ReadMaster        ReadPolicy = "MASTER"
	ReadPreferMaster  ReadPolicy = "PREFER_MASTER"
	ReadReplica       ReadPolicy = "REPLICA"
	ReadPreferReplica ReadPolicy = "PREFER_REPLICA"
	ReadAny           ReadPolicy = "ANY"
)

// Settings are Aeraki's RedisService settings. Batching knobs
// (maxBufferSizeBeforeFlush, bufferFlushTimeout) are accepted and have no
// effect: the proxy writes every batch of pipelined commands at once.
type Settings struct {
	// CaseInsensitive asks for case-insensitive prefix matching. Not
	// supported yet: refused in status.
	// +optional
	CaseInsensitive bool `json:"caseInsensitive,omitempty"`
	// OpTimeout is how long the server has to answer a command; the client
	// then gets a TIMEOUT error. No timeout when absent.
	// +optional
	OpTimeout *metav1.Duration `json:"opTimeout,omitempty"`
	// EnableCommandStats: per-command metrics are always on; accepted for
	// compatibility.
	// +optional
	EnableCommandStats bool `json:"enableCommandStats,omitempty"`
	// MaxBufferSizeBeforeFlush is accepted and has no effect.
	// +optional
	MaxBufferSizeBeforeFlush uint32 `json:"maxBufferSizeBeforeFlush,omitempty"`
	// BufferFlushTimeout is accepted and has no effect.
	// +optional
	BufferFlushTimeout *metav1.Duration `json:"bufferFlushTimeout,omitempty"`
	// MaxUpstreamUnknownConnections is accepted and has no effect.
	// +optional
	MaxUpstreamUnknownConnections *uint32 `json:"maxUpstreamUnknownConnections,omitempty"`
	// EnableHashtagging: pools hashed by key always hash a key's hash tag
	// ({user1}.a and {user1}.b go to the same server); accepted for
	// compatibility.
	// +optional
	EnableHashtagging bool `json:"enableHashtagging,omitempty"`
	// EnableRedirection: MOVED and ASK are always followed in cluster mode;
	// accepted for compatibility.
	// +optional
	EnableRedirection bool `json:"enableRedirection,omitempty"`
	// ReadPolicy is where read-only commands go; overrides the
	// RedisDestination's. MASTER (default) or PREFER_REPLICA (cluster mode).
	// +optional
	ReadPolicy ReadPolicy `json:"readPolicy,omitempty"`
	// Auth is the password clients must give (AUTH or HELLO AUTH).
	// +optional
	Auth *Auth `json:"auth,omitempty"`
}

// Route sends the commands whose key matches to a service.
type Route struct {
	// Match selects commands by key; absent (or an empty prefix), the route
	// is the catch-all.
	// +optional
	Match *RouteMatch `json:"match,omitempty"`
	// Route is the service that gets the commands.
	Route *Destination `json:"route"`
	// Mirror sends copies of the commands to other services; their answers
	// are dropped.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	Mirror []Mirror `json:"mirror,omitempty"`
}

// RouteMatch selects commands.
type RouteMatch struct {
	// Key matches the command's first key.
	// +optional
	Key *KeyMatch `json:"key,omitempty"`
}

// KeyMatch matches keys by prefix.
//
// +kubebuilder:validation:XValidation:rule="!has(self.removePrefix) || !self.removePrefix || (has(self.prefix) && self.prefix.size() > 0)",message="removePrefix needs a prefix"
type KeyMatch struct {
	// Prefix is the start of the key (case-sensitive).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Prefix string `json:"prefix,omitempty"`
	// RemovePrefix removes the prefix from every key of the command before
	// it is sent (and mirrored).
	// +optional
	RemovePrefix bool `json:"removePrefix,omitempty"`
}

// Destination is a Redis service.
type Destination struct {
	// Host is a service from the registry: a Kubernetes Service (a short
	// name is taken relative to the RedisService's namespace) or a
	// ServiceEntry host.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host"`
	// Port picks the service port; needed only when the host has more than
	// one Redis port and none has the listener's number.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	Port uint32 `json:"port,omitempty"`
}

// Mirror copies a route's commands to another service.
type Mirror struct {
	// Route is the service that gets the copies.
	Route *Destination `json:"route"`
	// Percentage of commands copied; 100 when absent.
	// +optional
	Percentage *Percent `json:"percentage,omitempty"`
	// ExcludeReadCommands copies only commands that write (not GET, MGET,
	// HGETALL, ...).
	// +optional
	ExcludeReadCommands bool `json:"excludeReadCommands,omitempty"`
}

// Percent is a percentage, 0 to 100.
type Percent struct {
	// Value is the percentage.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Value float64 `json:"value"`
}

// FaultType is what a fault does.
// +kubebuilder:validation:Enum=DELAY;ERROR
type FaultType string

// Fault types.
const (
	FaultDelay FaultType = "DELAY"
	FaultError FaultType = "ERROR"
)

// Fault delays or fails a share of commands.
//
// +kubebuilder:validation:XValidation:rule="(has(self.type) && self.type == 'ERROR') || has(self.delay)",message="a DELAY fault needs a delay"
type Fault struct {
	// Type is DELAY (the default) or ERROR (answered with a FAULT error).
	// +optional
	Type FaultType `json:"type,omitempty"`
	// Percentage of commands affected; 100 when absent.
	// +optional
	Percentage *Percent `json:"percentage,omitempty"`
	// Delay holds commands back (for an ERROR fault: before the error).
	// +optional
	Delay *metav1.Duration `json:"delay,omitempty"`
	// Commands limits the fault to these commands (any case); every command
	// when empty.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=64
	Commands []string `json:"commands,omitempty"`
}

// Status is what the controller made of a Redis resource.
type Status struct {
	// ObservedGeneration is the generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Accepted (the spec is valid and in force; when false, the
	// reason and message name the offending field and proxies keep the last
	// accepted version) and ResolvedRefs (every service and Secret named
	// exists).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// RedisServiceList is a list of RedisServices.
//
// +kubebuilder:object:root=true
type RedisServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RedisService `json:"items"`
}
