package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rosetta-mesh/rosetta/pkg/apis/fielderrors"
)

// RedisDestination says what a Redis service is: independent servers (one,
// or a pool hashed by key) or a Redis Cluster, and how the proxy logs in.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rd,categories=rosetta
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.spec.host`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.trafficPolicy.connectionPool.redis.mode`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RedisDestination struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec describes the service.
	Spec RedisDestinationSpec `json:"spec"`
	// Status tells whether the controller accepted the spec.
	// +optional
	Status Status `json:"status,omitempty"`
}

// RedisDestinationSpec describes one Redis service.
type RedisDestinationSpec struct {
	// Host is the service (a short name is taken relative to the
	// RedisDestination's namespace).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host"`
	// TrafficPolicy holds the connection settings.
	// +optional
	TrafficPolicy *TrafficPolicy `json:"trafficPolicy,omitempty"`
}

// TrafficPolicy holds the connection settings of a Redis service.
type TrafficPolicy struct {
	// ConnectionPool: TCP and Redis settings.
	// +optional
	ConnectionPool *ConnectionPool `json:"connectionPool,omitempty"`
}

// ConnectionPool holds TCP and Redis settings.
type ConnectionPool struct {
	// TCP settings, as in Istio's DestinationRule.
	// +optional
	TCP *TCPSettings `json:"tcp,omitempty"`
	// Redis settings.
	// +optional
	Redis *RedisSettings `json:"redis,omitempty"`
}

// TCPSettings are the TCP settings of Istio's DestinationRule that the
// proxy honours; the others (tcpKeepalive, maxConnectionDuration,
// idleTimeout) are refused in status.
type TCPSettings struct {
	// MaxConnections caps the connections to each server.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxConnections int32 `json:"maxConnections,omitempty"`
	// ConnectTimeout bounds a connection attempt; 10s when absent.
	// +optional
	ConnectTimeout *metav1.Duration `json:"connectTimeout,omitempty"`
	// TCPKeepalive is not supported yet.
	// +optional
	TCPKeepalive *TCPKeepalive `json:"tcpKeepalive,omitempty"`
	// MaxConnectionDuration is not supported yet.
	// +optional
	MaxConnectionDuration *metav1.Duration `json:"maxConnectionDuration,omitempty"`
	// IdleTimeout is not supported yet.
	// +optional
	IdleTimeout *metav1.Duration `json:"idleTimeout,omitempty"`
}

// TCPKeepalive is Istio's keepalive setting (refused in status).
type TCPKeepalive struct {
	// +optional
	Probes uint32 `json:"probes,omitempty"`
	// +optional
	Time *metav1.Duration `json:"time,omitempty"`
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`
}

// Mode is how the servers of a Redis service relate.
// +kubebuilder:validation:Enum=PROXY;CLUSTER
type Mode string

// Modes.
const (
	// ModeProxy: independent servers; routes pick them (one server, or a
	// pool hashed by key).
	ModeProxy Mode = "PROXY"
	// ModeCluster: a Redis Cluster; the endpoints are seeds and the slot map
	// picks the node.
	ModeCluster Mode = "CLUSTER"
)

// RedisSettings describe the servers.
//
// +kubebuilder:validation:XValidation:rule="!has(self.hashByKey) || !self.hashByKey || !has(self.mode) || self.mode != 'CLUSTER'",message="hashByKey is for pools of independent servers (mode PROXY); a Redis Cluster places keys by slot"
// +kubebuilder:validation:XValidation:rule="!has(self.readPolicy) || self.readPolicy == 'MASTER' || (has(self.mode) && self.mode == 'CLUSTER')",message="a read policy other than MASTER needs mode CLUSTER"
type RedisSettings struct {
	// Mode is PROXY (default) or CLUSTER.
	// +optional
	Mode Mode `json:"mode,omitempty"`
	// Auth is how the proxy logs in to the servers.
	// +optional
	Auth *Auth `json:"auth,omitempty"`
	// DiscoveryEndpoints ("host:port") replace the service's endpoints:
	// in CLUSTER mode they are the seeds the slot map is read from.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=3
	// +kubebuilder:validation:items:MaxLength=261
	DiscoveryEndpoints []string `json:"discoveryEndpoints,omitempty"`
	// ReadPolicy is where read-only commands go: MASTER (default) or, in
	// CLUSTER mode, PREFER_REPLICA. (Rosetta extension; Aeraki has it in
	// RedisService settings, which win.)
	// +optional
	ReadPolicy ReadPolicy `json:"readPolicy,omitempty"`
	// HashByKey makes the servers a pool hashed by key: each key (or its
	// hash tag) always goes to the same server. (Rosetta extension.)
	// +optional
	HashByKey bool `json:"hashByKey,omitempty"`
}

// Auth is a user name and password, inline or from a Secret; exactly one.
//
// +kubebuilder:validation:XValidation:rule="has(self.secret) != has(self.plain)",message="set exactly one of secret and plain"
type Auth struct {
	// Secret is a Kubernetes Secret in the resource's namespace.
	// +optional
	Secret *SecretReference `json:"secret,omitempty"`
	// Plain holds the credentials inline.
	// +optional
	Plain *PlainAuth `json:"plain,omitempty"`
}

// SecretReference names a Secret and its keys.
type SecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// PasswordField is the Secret's key holding the password; "password"
	// when absent.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PasswordField string `json:"passwordField,omitempty"`
	// UsernameField is the Secret's key holding the user name; "username"
	// when absent. A Secret without it gives no user name (Redis's
	// "default" user).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	UsernameField string `json:"usernameField,omitempty"`
}

// PlainAuth holds credentials inline.
type PlainAuth struct {
	// Password to send.
	// +kubebuilder:validation:MinLength=1
	Password string `json:"password"`
	// Username to send; none (Redis's "default" user) when absent.
	// +optional
	Username string `json:"username,omitempty"`
}

// RedisDestinationList is a list of RedisDestinations.
//
// +kubebuilder:object:root=true
type RedisDestinationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RedisDestination `json:"items"`
}

// Condition types and reasons of the Redis resources' status (the same
// words as MetaRouter's).
const (
	ConditionAccepted     = "Accepted"
	ConditionResolvedRefs = "ResolvedRefs"

	ReasonAccepted      = "Accepted"
	ReasonInvalid       = fielderrors.Invalid
	ReasonUnsupported   = fielderrors.Unsupported
	ReasonConflict      = "HostConflict"
	ReasonResolved      = "ResolvedRefs"
	ReasonUnknownHost   = "UnknownHost"
	ReasonUnknownSecret = "UnknownSecret"
)
