// Command rosettactl is Rosetta's command line: it checks static configs,
// explains where a request goes (from files, a running proxy or a
// controller), shows a controller's proxies, dumps a running proxy's
// config, and runs a self-contained demo.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/rosetta-mesh/rosetta/internal/cli"
	_ "github.com/rosetta-mesh/rosetta/protocols/standard"         // the codecs the proxy is built with
	_ "github.com/rosetta-mesh/rosetta/protocols/standard/control" // and the controller's part of each
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "rosettactl:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "rosettactl",
		Short:         "Inspect and try Rosetta, the multi-protocol extension for Istio",
		Version:       cli.Version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		// Every command checks --output, and the logging flags, which
		// the demo's proxies and controller log with.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			log, err := logFlags.Logger(os.Stderr)
			demoLog = log
			return err
		},
	}
	logFlags.Register(root.PersistentFlags(), "warn")
	registerOutput(root.PersistentFlags())
	root.AddCommand(newDemoCmd(), newValidateCmd(), newExplainCmd(), newDumpCmd(), newStatusCmd(), newConvertCmd())
	root.AddCommand(newCallCmd())
	root.AddCommand(newServeCmd())
	return root
}
