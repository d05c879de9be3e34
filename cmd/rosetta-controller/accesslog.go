package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/rosetta-mesh/rosetta/pkg/accesslog"
	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
)

// accessLogFlags turn on the access logs of every listener the controller
// sends, named as Istio's meshConfig names them (accessLogFile,
// accessLogEncoding), which is where an Istio operator turns them on.
type accessLogFlags struct {
	file     string
	encoding string
	fields   []string
	sample   float64
}

func (a *accessLogFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&a.file, "access-log-file", "", `where every proxy writes a line per request: "/dev/stdout", "/dev/stderr" or a file in the proxy's file system; empty: no access logs (Istio's meshConfig.accessLogFile)`)
	fs.StringVar(&a.encoding, "access-log-encoding", "TEXT", "TEXT (key=value pairs) or JSON (Istio's meshConfig.accessLogEncoding)")
	fs.StringSliceVar(&a.fields, "access-log-fields", nil, "the fields of each line, in order; every field when empty ("+strings.Join(accesslog.FieldNames(), ", ")+")")
	fs.Float64Var(&a.sample, "access-log-sample-percent", 100, "share of requests logged, 0 to 100")
}

// config is the AccessLog the flags ask for; nil when logs are off.
func (a *accessLogFlags) config() *configv1alpha1.AccessLog {
	if a.file == "" {
		return nil
	}
	pb := &configv1alpha1.AccessLog{Path: a.file, Fields: a.fields, SamplePercent: &a.sample}
	if strings.EqualFold(a.encoding, "JSON") {
		pb.Format = configv1alpha1.AccessLog_JSON
	}
	return pb
}

// check refuses what a proxy would refuse, naming the flag.
func (a *accessLogFlags) check() error {
	switch strings.ToUpper(a.encoding) {
	case "TEXT", "JSON":
	default:
		return fmt.Errorf("--access-log-encoding: %q is not TEXT or JSON", a.encoding)
	}
	if a.file == "" {
		return nil
	}
	if _, err := accesslog.Compile(a.config()); err != nil {
		name := "--access-log-file"
		switch {
		case strings.HasPrefix(err.Error(), "fields"):
			name = "--access-log-fields"
		case strings.HasPrefix(err.Error(), "sample_percent"):
			name = "--access-log-sample-percent"
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
