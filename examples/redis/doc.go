// Package redis holds the Redis example configs: proxy.yaml, a ready static
// config, and demo.yaml, the config of the Redis part of `rosettactl demo`,
// which it embeds so the demo runs from any directory.
package redis

import _ "embed"

// DemoConfig is examples/redis/demo.yaml.
//
//go:embed demo.yaml
var DemoConfig []byte

// DemoConfigPath is where DemoConfig lives in the repository.
const DemoConfigPath = "examples/redis/demo.yaml"
