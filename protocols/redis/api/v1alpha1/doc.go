// Package v1alpha1 holds Rosetta's Redis API, group redis.rosetta.dev:
// RedisService (how the commands sent to a Redis service are routed) and
// RedisDestination (what a Redis service is: standalone servers, a pool
// hashed by key, or a Redis Cluster, and how the proxy logs in to it).
//
// Both accept every field of Aeraki's resources of the same names
// (redis.aeraki.io/v1alpha1) with the same JSON names, so an Aeraki user
// moves by changing the apiVersion line. Fields the proxy cannot honour are
// refused in status (Validate) rather than silently dropped.
//
// +kubebuilder:object:generate=true
// +groupName=redis.rosetta.dev
package v1alpha1
