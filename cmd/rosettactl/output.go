package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// The output formats every command takes with --output.
const (
	outputTable = "table"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// registerOutput adds --output (-o) to fs; every command reads it
// through printResult.
func registerOutput(fs *pflag.FlagSet) {
	fs.StringP("output", "o", outputTable, "output format: table (for people), json or yaml (for programs)")
}

// outputFormat is the command's --output, checked.
func outputFormat(cmd *cobra.Command) (string, error) {
	f := cmd.Flag("output")
	if f == nil {
		return outputTable, nil
	}
	switch v := f.Value.String(); v {
	case outputTable, outputJSON, outputYAML:
		return v, nil
	default:
		return "", fmt.Errorf("--output %q: want table, json or yaml", v)
	}
}

// printResult writes v to the command's output: as JSON or YAML (the
// same document: YAML is the JSON's fields), or with table, which
// writes the human form through a tabwriter (columns separated by tabs).
func printResult(cmd *cobra.Command, v any, table func(w io.Writer) error) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	return writeResult(cmd.OutOrStdout(), format, v, table)
}

func writeResult(out io.Writer, format string, v any, table func(w io.Writer) error) error {
	switch format {
	case outputJSON:
		js, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = out.Write(append(js, '\n'))
		return err
	case outputYAML:
		y, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = out.Write(y)
		return err
	default:
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		if err := table(tw); err != nil {
			return err
		}
		return tw.Flush()
	}
}

// orDash is s, or "-" for an empty table cell.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
