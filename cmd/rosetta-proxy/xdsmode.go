package main

import (
	"fmt"

	"github.com/spf13/pflag"
)

// registerXDSMode adds --xds-mode, which sets delta: the variant of ADS
// the proxy subscribes with. Delta by default: a change to one of many
// services sends that service's resources alone; sotw is for a
// controller that serves state of the world only.
func registerXDSMode(fs *pflag.FlagSet, delta *bool) {
	*delta = true
	fs.Var((*xdsMode)(delta), "xds-mode", "how the proxy subscribes over ADS: delta (incremental: a change sends the resources it changes) or sotw (state of the world: a change sends every resource of its type) (with --xds)")
}

// xdsMode is --xds-mode: true for delta, false for sotw.
type xdsMode bool

func (m *xdsMode) String() string {
	if *m {
		return "delta"
	}
	return "sotw"
}

func (m *xdsMode) Set(s string) error {
	switch s {
	case "delta":
		*m = true
	case "sotw":
		*m = false
	default:
		return fmt.Errorf("%q is not delta or sotw", s)
	}
	return nil
}

func (*xdsMode) Type() string { return "delta|sotw" }

// Interface guards.
var _ pflag.Value = (*xdsMode)(nil)
