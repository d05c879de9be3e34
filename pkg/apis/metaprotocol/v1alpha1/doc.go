// Package v1alpha1 holds Rosetta's Kubernetes API, group
// metaprotocol.rosetta.dev: MetaRouter (routes for MetaProtocol services),
// ApplicationProtocol (which codec handles a protocol) and
// MetaAuthorizationPolicy (Istio's AuthorizationPolicy on codec attributes).
//
// MetaRouter accepts every field of Aeraki's MetaRouter
// (metaprotocol.aeraki.io/v1alpha1) with the same name and meaning, so an
// Aeraki user moves by changing the apiVersion line, and adds several hosts,
// per-route timeouts, retries, fault injection, hash policies and rate limits.
//
// +kubebuilder:object:generate=true
// +groupName=metaprotocol.rosetta.dev
package v1alpha1
