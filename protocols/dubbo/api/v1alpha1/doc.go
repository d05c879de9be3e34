// Package v1alpha1 holds Rosetta's Dubbo API, group dubbo.rosetta.dev:
// DubboAuthorizationPolicy, access control on the interfaces and methods of
// the Dubbo services of a namespace.
//
// It accepts every field of Aeraki's resource of the same name
// (dubbo.aeraki.io/v1alpha1) with the same JSON names, so an Aeraki user
// moves by changing the apiVersion line; the folder source reads Aeraki's
// apiVersion as it is.
//
// +kubebuilder:object:generate=true
// +groupName=dubbo.rosetta.dev
package v1alpha1
