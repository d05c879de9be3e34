// Package accesslog writes one line per request a listener serves, in text
// or JSON, to stdout, stderr or a file. Lines are formatted on the request's
// goroutine and handed to a writer goroutine through a bounded queue: the
// request path never waits on I/O, and a line that finds the queue full is
// dropped and counted.
package accesslog

import (
	"fmt"
	"math"
	"slices"
	"strings"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
)

// Field is one column of a line.
type Field uint8

// The fields a line may hold, in their default order.
const (
	StartTime Field = iota
	Listener
	Route
	Cluster
	Upstream
	Protocol
	Service
	Method
	Status
	ResponseCode
	DurationMS
	RequestBytes
	ResponseBytes
	Tries
	TraceID
	Caller
	Downstream
	Detail
	numFields
)

// names are the fields' names in config and in lines.
var names = [numFields]string{
	StartTime:     "start_time",
	Listener:      "listener",
	Route:         "route",
	Cluster:       "cluster",
	Upstream:      "upstream",
	Protocol:      "protocol",
	Service:       "service",
	Method:        "method",
	Status:        "status",
	ResponseCode:  "response_code",
	DurationMS:    "duration_ms",
	RequestBytes:  "request_bytes",
	ResponseBytes: "response_bytes",
	Tries:         "tries",
	TraceID:       "trace_id",
	Caller:        "caller",
	Downstream:    "downstream",
	Detail:        "detail",
}

func (f Field) String() string { return names[f] }

// FieldNames are the names a config may list, in their default order.
func FieldNames() []string { return names[:] }

// Format is how a line is written.
type Format uint8

const (
	// Text is "key=value" pairs separated by spaces.
	Text Format = iota
	// JSON is one object per line.
	JSON
)

// Where lines go: standard output when a config names no path (or
// "/dev/stdout", as Istio's meshConfig.accessLogFile says it).
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Config is a checked AccessLog: what a listener logs and where.
type Config struct {
	Format Format
	Fields []Field
	// Path is Stdout, Stderr or a file's path.
	Path string
	// Percent of requests logged, 0 to 100.
	Percent float64
}

// Compile checks an AccessLog message; nil when pb is nil (logs off). The
// error names the field at fault, relative to the message.
func Compile(pb *configv1alpha1.AccessLog) (*Config, error) {
	if pb == nil {
		return nil, nil
	}
	c := &Config{Path: pb.GetPath(), Percent: 100}
	switch pb.GetFormat() {
	case configv1alpha1.AccessLog_TEXT:
		c.Format = Text
	case configv1alpha1.AccessLog_JSON:
		c.Format = JSON
	default:
		return nil, fmt.Errorf("format: %d is not TEXT or JSON", pb.GetFormat())
	}
	for i, name := range pb.GetFields() {
		j := slices.Index(names[:], name)
		if j < 0 {
			return nil, fmt.Errorf("fields[%d]: %q is not a field (known: %s)", i, name, strings.Join(names[:], ", "))
		}
		if slices.Contains(c.Fields, Field(j)) {
			return nil, fmt.Errorf("fields[%d]: %q is listed twice", i, name)
		}
		c.Fields = append(c.Fields, Field(j))
	}
	if len(c.Fields) == 0 {
		for f := range numFields {
			c.Fields = append(c.Fields, f)
		}
	}
	switch c.Path {
	case "", Stdout, "/dev/stdout":
		c.Path = Stdout
	case "/dev/stderr":
		c.Path = Stderr
	}
	if strings.ContainsRune(c.Path, 0) {
		return nil, fmt.Errorf("path: must not hold a NUL byte")
	}
	if pb.SamplePercent != nil {
		p := pb.GetSamplePercent()
		if math.IsNaN(p) || p < 0 || p > 100 {
			return nil, fmt.Errorf("sample_percent: %v is not between 0 and 100", p)
		}
		c.Percent = p
	}
	return c, nil
}
