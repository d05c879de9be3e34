package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ApplicationProtocol tells which codec handles a protocol. Ports named
// "<protocol>-*", "tcp-<protocol>-*" or "tcp-metaprotocol-<protocol>-*", or
// whose appProtocol is the protocol, are then served by that codec.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ap,categories=rosetta
// +kubebuilder:printcolumn:name="Protocol",type=string,JSONPath=`.spec.protocol`
// +kubebuilder:printcolumn:name="Codec",type=string,JSONPath=`.spec.codec`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ApplicationProtocol struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec names the protocol and its codec.
	Spec ApplicationProtocolSpec `json:"spec"`
	// Status is reserved for the controller.
	// +optional
	Status ApplicationProtocolStatus `json:"status,omitempty"`
}

// ApplicationProtocolSpec maps a protocol name to a codec.
type ApplicationProtocolSpec struct {
	// Protocol is the name used in port names and appProtocol ("dubbo").
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([a-z0-9.]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	Protocol string `json:"protocol"`
	// Codec is the name the codec registered in the proxy build ("dubbo").
	// Aeraki's "aeraki.meta_protocol.codec.<name>" is read as "<name>".
	//
	// "auto" serves several protocols on one port: the proxy tells each
	// connection's protocol from the first bytes its caller sends, among
	// the codecs of its build that can sniff (each protocol's README says
	// what it recognises, under "Sniffing"), and serves the connection with
	// that codec. A connection whose first bytes no codec claims is closed;
	// so is one that sends nothing within the listener's idle timeout.
	// Routes match on the attributes of the codec a connection picked: key
	// them on an attribute only one protocol has ("interface" for Dubbo,
	// "callee" for tRPC), since "method" is both Dubbo's and Thrift's. A
	// protocol's own kinds (RedisService, DubboAuthorizationPolicy) do not
	// apply to an "auto" port; MetaRouters and MetaAuthorizationPolicies do.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Codec string `json:"codec"`
	// CodecOptions are passed to the codec as they are. With codec "auto",
	// an option named "<codec>.<option>" goes to that codec alone
	// ("redis.mode"), and any other option to every codec the proxy may
	// pick, each of which must accept it.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	CodecOptions map[string]string `json:"codecOptions,omitempty"`
}

// ApplicationProtocolStatus is reserved for the controller.
type ApplicationProtocolStatus struct {
	// Conditions of the resource.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ApplicationProtocolList is a list of ApplicationProtocols.
//
// +kubebuilder:object:root=true
type ApplicationProtocolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ApplicationProtocol `json:"items"`
}
