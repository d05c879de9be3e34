// Package dubbo holds the Dubbo example configs. It embeds demo.yaml so
// `rosettactl demo` runs from any directory, even when installed with
// `go install`.
package dubbo

import _ "embed"

// DemoConfig is examples/dubbo/demo.yaml.
//
//go:embed demo.yaml
var DemoConfig []byte

// DemoConfigPath is where DemoConfig lives in the repository.
const DemoConfigPath = "examples/dubbo/demo.yaml"
