package config

// LazyDestinationType is the xDS type a proxy in lazy mode subscribes to
// (delta xDS, by name) to say which destinations its callers use: each
// name is a LazyListener destination ("<host>:<port>"). The controller
// never sends resources of it; it reads the subscriptions and narrows the
// proxy's config to those destinations and the fallback
// (docs/mesh-integration.md, "Lazy mode").
const LazyDestinationType = "type.googleapis.com/rosetta.config.v1alpha1.LazyDestination"

// Limits on what a lazy proxy may report, so a proxy cannot make the
// controller hold or hash without bound.
const (
	MaxLazyDestinations      = 10_000
	MaxLazyDestinationLength = 300
)
