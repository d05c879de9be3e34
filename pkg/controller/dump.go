package controller

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// Dump is resources in the protobuf JSON mapping, in a stable form (the
// protojson output itself varies its spacing on purpose).
type Dump struct {
	Listeners []json.RawMessage `json:"listeners"`
	Clusters  []json.RawMessage `json:"clusters"`
	Endpoints []json.RawMessage `json:"endpoints"`
	Routes    []json.RawMessage `json:"routes"`
	Secrets   []json.RawMessage `json:"secrets,omitempty"`
}

// DumpResources converts resources to a Dump, with credentials redacted
// (config.Redacted): it is what /debug/config_dump shows.
func DumpResources(res *config.Resources) (*Dump, error) {
	d := &Dump{}
	red := config.Redacted(*res)
	res = &red
	var err error
	if d.Listeners, err = dumpAll(res.Listeners); err != nil {
		return nil, err
	}
	if d.Clusters, err = dumpAll(res.Clusters); err != nil {
		return nil, err
	}
	if d.Endpoints, err = dumpAll(res.Endpoints); err != nil {
		return nil, err
	}
	if d.Routes, err = dumpAll(res.Routes); err != nil {
		return nil, err
	}
	if len(res.Secrets) > 0 {
		if d.Secrets, err = dumpAll(res.Secrets); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func dumpAll[T proto.Message](list []T) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(list))
	for _, m := range list {
		js, err := protojson.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("controller: dump: %w", err)
		}
		var v any
		if err := json.Unmarshal(js, &v); err != nil {
			return nil, fmt.Errorf("controller: dump: %w", err)
		}
		stable, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("controller: dump: %w", err)
		}
		out = append(out, stable)
	}
	return out, nil
}
