package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rosetta-mesh/rosetta/pkg/apis/fielderrors"
)

// DubboAuthorizationPolicy allows or denies calls to the Dubbo services of
// its namespace (of every namespace, when it is in the root namespace,
// istio-system by default) on the caller's identity and namespace and on
// the interface and method called. It is Aeraki's DubboAuthorizationPolicy;
// Rosetta evaluates it with Istio's AuthorizationPolicies and its own
// MetaAuthorizationPolicies in Istio's order: DENY first, then ALLOW.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=dap,categories=rosetta
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.action`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DubboAuthorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the policy.
	Spec DubboAuthorizationPolicySpec `json:"spec"`
	// Status tells whether the controller accepted the spec.
	// +optional
	Status Status `json:"status,omitempty"`
}

// DubboAuthorizationPolicySpec is Aeraki's spec, field for field.
type DubboAuthorizationPolicySpec struct {
	// Rules match calls; the policy matches a call when any rule does. An
	// ALLOW policy without rules matches nothing, so it denies every call
	// to the services it covers.
	// +optional
	// +kubebuilder:validation:MaxItems=128
	Rules []Rule `json:"rules,omitempty"`

	// Action is what a call that matches a rule gets: ALLOW (the default)
	// or DENY.
	// +optional
	// +kubebuilder:validation:Enum=ALLOW;DENY
	Action string `json:"action,omitempty"`
}

// The actions of a DubboAuthorizationPolicy.
const (
	ActionAllow = "ALLOW"
	ActionDeny  = "DENY"
)

// Rule matches a call when one of from matches (or from is empty) and one
// of to matches (or to is empty). An empty rule matches every call.
type Rule struct {
	// From lists the callers.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	From []RuleFrom `json:"from,omitempty"`
	// To lists the operations.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	To []RuleTo `json:"to,omitempty"`
}

// RuleFrom wraps a source.
type RuleFrom struct {
	// Source is who calls.
	Source *Source `json:"source"`
}

// RuleTo wraps an operation.
type RuleTo struct {
	// Operation is what is called.
	Operation *Operation `json:"operation"`
}

// Source matches a caller when every field it sets holds; the values of a
// field are ORed. Values are exact, "prefix*", "*suffix" or "*" (any
// non-empty value). Principals and namespaces come from the caller's mTLS
// certificate: a plaintext caller has neither.
//
// +kubebuilder:validation:MinProperties=1
type Source struct {
	// Principals are caller identities,
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
	// Namespaces are the callers' namespaces.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	Namespaces []string `json:"namespaces,omitempty"`
	// NotNamespaces are namespaces that must not call.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	NotNamespaces []string `json:"notNamespaces,omitempty"`
}

// Operation matches a call when every field it sets holds.
//
// +kubebuilder:validation:MinProperties=1
type Operation struct {
	// Interfaces are the Dubbo interfaces (service paths) called.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	Interfaces []string `json:"interfaces,omitempty"`
	// NotInterfaces are interfaces that must not be called.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	NotInterfaces []string `json:"notInterfaces,omitempty"`
	// Methods are the Dubbo methods called.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	Methods []string `json:"methods,omitempty"`
	// NotMethods are methods that must not be called.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	NotMethods []string `json:"notMethods,omitempty"`
}

// Status is what the controller made of a DubboAuthorizationPolicy.
type Status struct {
	// ObservedGeneration is the generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Accepted (the spec is valid and in force; when false, the
	// reason and message name the offending field and proxies keep the last
	// accepted version).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// DubboAuthorizationPolicyList is a list of DubboAuthorizationPolicies.
//
// +kubebuilder:object:root=true
type DubboAuthorizationPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DubboAuthorizationPolicy `json:"items"`
}

// Condition types and reasons of a DubboAuthorizationPolicy's status.
const (
	ConditionAccepted = "Accepted"

	ReasonAccepted    = "Accepted"
	ReasonInvalid     = fielderrors.Invalid
	ReasonUnsupported = fielderrors.Unsupported
)
