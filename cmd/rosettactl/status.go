package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rosetta-mesh/rosetta/pkg/xds"
)

// statusDoc is the controller's /debug/status.
type statusDoc struct {
	Proxies []xds.ProxyStatus `json:"proxies"`
}

func newStatusCmd() *cobra.Command {
	var addr string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List the proxies connected to a controller, the config version each acknowledged, and any it refused",
		Long: `Status asks a running rosetta-controller (its --debug-address, /debug/status)
for the proxies connected to it. For each resource type it shows the version the
controller sent and the version the proxy acknowledged (ACK); a refused version
(NACK) is shown with the proxy's reason. A proxy keeps running its last accepted
config while it refuses a newer one.`,
		Example: `  rosettactl status --controller 127.0.0.1:15015`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := getAdmin(addr, "/debug/status", timeout)
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			var doc statusDoc
			if err := json.Unmarshal(body, &doc); err != nil {
				return fmt.Errorf("status: %s: %w", addr, err)
			}
			return printResult(cmd, doc, func(w io.Writer) error { return statusTable(w, doc) })
		},
	}
	cmd.Flags().StringVar(&addr, "controller", "127.0.0.1:15015", "the controller's debug address (its --debug-address)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the controller")
	return cmd
}

// statusTable writes a row per proxy and resource type, and the refusals.
func statusTable(w io.Writer, doc statusDoc) error {
	if len(doc.Proxies) == 0 {
		fmt.Fprintln(w, "no proxies connected")
		return nil
	}
	fmt.Fprintln(w, "PROXY\tNAMESPACE\tTYPE\tRESOURCES\tSENT\tACKED\tSTATE")
	for _, p := range doc.Proxies {
		for _, t := range p.Types {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", p.ID, orDash(p.Namespace), t.Type, t.Resources, orDash(t.Sent), orDash(t.Acked), typeState(t))
		}
	}
	return nil
}

// typeState says in a word or a line where a type stands for a proxy.
func typeState(t xds.TypeStatus) string {
	switch {
	case t.Rejected != nil:
		// The reason is the proxy's; keep the table to one line a row.
		return fmt.Sprintf("NACK %s: %s", t.Rejected.Version, strings.Join(strings.Fields(t.Rejected.Detail), " "))
	case t.Sent == "":
		return "-"
	case t.Sent == t.Acked:
		return "ACK"
	case t.Resources == 0 && t.Acked == "":
		// A delta stream sends nothing for a type without resources.
		return "none"
	default:
		return "pending"
	}
}
