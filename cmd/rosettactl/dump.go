package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newDumpCmd() *cobra.Command {
	var admin string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "dump",
		Short: "Print the configuration a running proxy holds (its /config_dump)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return dump(cmd.OutOrStdout(), admin, timeout)
		},
	}
	cmd.Flags().StringVar(&admin, "admin", "127.0.0.1:15000", "the proxy's admin address")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the proxy")
	return cmd
}

func dump(out io.Writer, admin string, timeout time.Duration) error {
	url := strings.TrimSuffix(admin, "/") + "/config_dump"
	if !strings.Contains(admin, "://") {
		url = "http://" + url
	}
	client := &http.Client{Timeout: timeout}
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	defer resp.Body.Close()
	// A config dump is small; the cap keeps a wrong address from filling memory.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("dump: %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("dump: %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	if _, err := out.Write(body); err != nil {
		return err
	}
	if len(body) > 0 && body[len(body)-1] != '\n' {
		_, err = fmt.Fprintln(out)
	}
	return err
}
