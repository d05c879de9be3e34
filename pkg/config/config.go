// Package config holds the resources a Rosetta proxy runs on, and reads them
// from a static YAML file.
//
// The resources are the very messages the controller sends over xDS: Envoy's
// Listener, Cluster, ClusterLoadAssignment and Secret, and Rosetta's own
// RouteConfiguration. A listener becomes a Rosetta listener through a
// MetaProtocolProxy filter in its filter chain. Because the file and the xDS
// stream carry the same types, the two paths cannot drift.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
)

// Type URLs of the resources, as xDS names them.
const (
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	RouteType    = "type.googleapis.com/rosetta.config.v1alpha1.RouteConfiguration"
	// FilterName is the network filter that makes a listener a Rosetta listener.
	FilterName = "rosetta.metaprotocol"
)

// Resources is one complete configuration of a proxy.
type Resources struct {
	Listeners []*listenerv3.Listener
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	Routes    []*configv1alpha1.RouteConfiguration
	// Secrets hold credentials that listeners name (secrets.go).
	Secrets []*tlsv3.Secret
}

// Admin is where the proxy serves /ready, /metrics and /config_dump.
type Admin struct {
	Address string `json:"address"`
}

// Bootstrap is a static config file: the admin address and the resources.
type Bootstrap struct {
	Admin Admin
	Resources
}

type rawFile struct {
	Admin     Admin             `json:"admin"`
	Listeners []json.RawMessage `json:"listeners"`
	Clusters  []json.RawMessage `json:"clusters"`
	Endpoints []json.RawMessage `json:"endpoints"`
	Routes    []json.RawMessage `json:"routes"`
	Secrets   []json.RawMessage `json:"secrets"`
}

// LoadFile reads a static config file.
func LoadFile(path string) (*Bootstrap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	b, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// Parse reads a static config from YAML (or JSON). Field names follow the
// protobuf JSON mapping: snake_case and lowerCamelCase both work. Unknown
// fields are errors, so a typo does not silently drop a setting.
func Parse(data []byte) (*Bootstrap, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var raw rawFile
	if err := strictJSON(js, &raw); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	b := &Bootstrap{Admin: raw.Admin}
	if b.Listeners, err = unmarshalAll[listenerv3.Listener]("listeners", raw.Listeners); err != nil {
		return nil, err
	}
	if b.Clusters, err = unmarshalAll[clusterv3.Cluster]("clusters", raw.Clusters); err != nil {
		return nil, err
	}
	if b.Endpoints, err = unmarshalAll[endpointv3.ClusterLoadAssignment]("endpoints", raw.Endpoints); err != nil {
		return nil, err
	}
	if b.Routes, err = unmarshalAll[configv1alpha1.RouteConfiguration]("routes", raw.Routes); err != nil {
		return nil, err
	}
	if b.Secrets, err = unmarshalAll[tlsv3.Secret]("secrets", raw.Secrets); err != nil {
		return nil, err
	}
	return b, nil
}

func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// unmarshalAll decodes each raw message into a new T.
func unmarshalAll[T any, P interface {
	*T
	proto.Message
}](field string, raws []json.RawMessage) ([]P, error) {
	out := make([]P, 0, len(raws))
	for i, r := range raws {
		m := P(new(T))
		if err := protojson.Unmarshal(r, m); err != nil {
			return nil, fmt.Errorf("config: %s[%d]: %w", field, i, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// EndpointsName is the ClusterLoadAssignment an EDS cluster takes its
// endpoints from: its eds_cluster_config's service name, else its own
// name. ok is false for a cluster of another type.
func EndpointsName(c *clusterv3.Cluster) (name string, ok bool) {
	if c.GetType() != clusterv3.Cluster_EDS {
		return "", false
	}
	if name = c.GetEdsClusterConfig().GetServiceName(); name == "" {
		name = c.GetName()
	}
	return name, true
}
