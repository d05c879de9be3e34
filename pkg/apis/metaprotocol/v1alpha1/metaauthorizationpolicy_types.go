package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MetaAuthorizationPolicy allows or denies the requests of MetaProtocol
// services on who calls (the caller's mTLS identity, its namespace, its
// address) and what it calls (the listener port and the codec's attributes:
// a Dubbo interface and method, a tRPC callee and func, a Redis command).
// It is Istio's AuthorizationPolicy with codec attributes in place of HTTP
// paths and methods, and is evaluated with Istio's AuthorizationPolicies in
// Istio's order: DENY first, then ALLOW (docs/mesh-integration.md).
//
// Which traffic it covers: the services of its namespace (of every
// namespace when it is in the root namespace, istio-system by default),
// narrowed to hosts when set, at every proxy, or at those that selector or
// targetRefs pick.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mapol,categories=rosetta
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.action`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MetaAuthorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the policy.
	Spec MetaAuthorizationPolicySpec `json:"spec"`
	// Status tells whether the controller accepted the spec.
	// +optional
	Status MetaRouterStatus `json:"status,omitempty"`
}

// MetaAuthorizationPolicySpec is an authorization policy for MetaProtocol
// services.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.selector) && has(self.targetRefs))",message="set selector or targetRefs, not both"
type MetaAuthorizationPolicySpec struct {
	// Hosts narrows the policy to these services of its namespace (any
	// namespace's, for a policy in the root namespace): fully qualified
	// names, ServiceEntry hosts, or short names taken relative to the
	// policy's namespace. Every service of the namespace when empty.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	Hosts []string `json:"hosts,omitempty"`

	// Selector picks the proxies (by their workload labels) in the
	// policy's namespace that apply it, as in Istio.
	// +optional
	Selector *WorkloadSelector `json:"selector,omitempty"`

	// TargetRefs names what the policy attaches to, as in Istio: a Service
	// (group "" or "core", kind Service) or ServiceEntry (group
	// networking.istio.io) of the policy's namespace, whose listeners it
	// covers, or a Gateway (group gateway.networking.k8s.io) whose proxies,
	// those labelled gateway.networking.k8s.io/gateway-name or
	// istio.io/gateway-name with its name, apply it.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	TargetRefs []PolicyTargetReference `json:"targetRefs,omitempty"`

	// Action is what a request that matches a rule gets: ALLOW (the
	// default), DENY, or AUDIT (marked in logs and metrics only).
	// +optional
	// +kubebuilder:validation:Enum=ALLOW;DENY;AUDIT
	Action string `json:"action,omitempty"`

	// Rules match requests; the policy matches a request when any rule
	// does. An ALLOW policy without rules matches nothing, so it denies
	// every request it covers (Istio's allow-nothing).
	// +optional
	// +kubebuilder:validation:MaxItems=128
	Rules []AuthorizationRule `json:"rules,omitempty"`
}

// The actions of an authorization policy.
const (
	ActionAllow = "ALLOW"
	ActionDeny  = "DENY"
	ActionAudit = "AUDIT"
)

// WorkloadSelector selects proxies by their workload labels.
type WorkloadSelector struct {
	// MatchLabels must all be among the proxy's labels.
	// +kubebuilder:validation:MaxProperties=64
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
}

// PolicyTargetReference names an object a policy attaches to.
type PolicyTargetReference struct {
	// Group is the object's API group: "" (or "core") for a Service,
	// networking.istio.io for a ServiceEntry, gateway.networking.k8s.io for
	// a Gateway.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group,omitempty"`
	// Kind is Service, ServiceEntry or Gateway.
	// +kubebuilder:validation:Enum=Service;ServiceEntry;Gateway
	Kind string `json:"kind"`
	// Name is the object's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace must be the policy's own when set.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// AuthorizationRule matches a request when one of from matches (or from is
// empty) and one of to matches (or to is empty). An empty rule matches
// every request.
type AuthorizationRule struct {
	// From lists the callers.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	From []AuthorizationFrom `json:"from,omitempty"`
	// To lists the operations.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	To []AuthorizationTo `json:"to,omitempty"`
}

// AuthorizationFrom wraps a source, as in Istio.
type AuthorizationFrom struct {
	// Source is who calls.
	Source AuthorizationSource `json:"source"`
}

// AuthorizationTo wraps an operation, as in Istio.
type AuthorizationTo struct {
	// Operation is what is called.
	Operation AuthorizationOperation `json:"operation"`
}

// AuthorizationSource matches a caller when every field it sets holds; the
// values of a field are ORed. Values are exact, "prefix*", "*suffix" or "*"
// (any non-empty value). A plaintext caller has no principal and no
// namespace: a field that lists some never holds for it.
//
// +kubebuilder:validation:MinProperties=1
type AuthorizationSource struct {
	// Principals are caller identities from their mTLS certificates,
	// "<trust-domain>/ns/<namespace>/sa/<service-account>".
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	Principals []string `json:"principals,omitempty"`
	// NotPrincipals are identities that must not call.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	NotPrincipals []string `json:"notPrincipals,omitempty"`
	// Namespaces are the callers' namespaces, from their identities.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	Namespaces []string `json:"namespaces,omitempty"`
	// NotNamespaces are namespaces that must not call.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	NotNamespaces []string `json:"notNamespaces,omitempty"`
	// IPBlocks are the callers' addresses: CIDRs or single IPs of the
	// connection's peer.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	IPBlocks []string `json:"ipBlocks,omitempty"`
	// NotIPBlocks are addresses that must not call.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	NotIPBlocks []string `json:"notIpBlocks,omitempty"`
}

// AuthorizationOperation matches a request when every field it sets holds.
//
// +kubebuilder:validation:MinProperties=1
type AuthorizationOperation struct {
	// Ports are the listener ports the request may arrive on.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	Ports []uint32 `json:"ports,omitempty"`
	// NotPorts are listener ports it must not arrive on.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	NotPorts []uint32 `json:"notPorts,omitempty"`
	// Attributes maps a codec attribute ("interface", "method", "callee",
	// "command", an attachment or header key) to the values it must have,
	// all of which must hold. A request without the attribute matches no
	// value and no notValue.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Attributes map[string]AttributeValues `json:"attributes,omitempty"`
}

// AttributeValues holds when the attribute's value matches one of values
// (when set) and none of notValues. Values are exact, "prefix*", "*suffix"
// or "*".
//
// +kubebuilder:validation:XValidation:rule="has(self.values) || has(self.notValues)",message="set values, notValues or both"
type AttributeValues struct {
	// Values the attribute may have.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	Values []string `json:"values,omitempty"`
	// NotValues the attribute must not have.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	NotValues []string `json:"notValues,omitempty"`
}

// MetaAuthorizationPolicyList is a list of MetaAuthorizationPolicies.
//
// +kubebuilder:object:root=true
type MetaAuthorizationPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MetaAuthorizationPolicy `json:"items"`
}
