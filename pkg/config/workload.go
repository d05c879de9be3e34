package config

import (
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Workload metadata, for the labels of Istio's metrics, as istiod writes it
// for Envoy: a cluster's filter_metadata "istio" has "services", a list of
// {host, name, namespace}; an endpoint's has "workload", the string
// "NAME;NAMESPACE;CANONICAL_SERVICE;CANONICAL_REVISION;CLUSTER_ID". Rosetta
// adds "principal", the SPIFFE ID of the endpoint's service account, which
// istiod leaves to Envoy's peer metadata exchange.
const (
	IstioMetadataKey = "istio"
	ServicesKey      = "services"
	WorkloadKey      = "workload"
	PrincipalKey     = "principal"
)

// maxMetadataField caps each workload field read from config: they become
// metric labels.
const maxMetadataField = 253

// WorkloadMetadata is an endpoint's workload, as its metadata carries it.
type WorkloadMetadata struct {
	Name, Namespace, App, Version, Cluster, Principal string
}

// Metadata is the endpoint metadata that carries w.
func (w WorkloadMetadata) Metadata() *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{
		WorkloadKey: structpb.NewStringValue(strings.Join([]string{w.Name, w.Namespace, w.App, w.Version, w.Cluster}, ";")),
	}}
	if w.Principal != "" {
		s.Fields[PrincipalKey] = structpb.NewStringValue(w.Principal)
	}
	return s
}

// ParseWorkload reads an endpoint's workload from its metadata; ok false
// when it has none. A malformed entry is an error naming the field.
func ParseWorkload(md *corev3.Metadata) (WorkloadMetadata, bool, error) {
	f := md.GetFilterMetadata()[IstioMetadataKey].GetFields()
	v, ok := f[WorkloadKey]
	if !ok {
		return WorkloadMetadata{}, false, nil
	}
	parts := strings.Split(v.GetStringValue(), ";")
	if len(parts) != 5 {
		return WorkloadMetadata{}, false, fmt.Errorf("metadata.filter_metadata.%s.%s: want NAME;NAMESPACE;CANONICAL_SERVICE;CANONICAL_REVISION;CLUSTER_ID, got %d fields", IstioMetadataKey, WorkloadKey, len(parts))
	}
	w := WorkloadMetadata{Name: parts[0], Namespace: parts[1], App: parts[2], Version: parts[3], Cluster: parts[4], Principal: f[PrincipalKey].GetStringValue()}
	for _, s := range []string{w.Name, w.Namespace, w.App, w.Version, w.Cluster, w.Principal} {
		if len(s) > maxMetadataField {
			return WorkloadMetadata{}, false, fmt.Errorf("metadata.filter_metadata.%s: a field of %d bytes is over the %d-byte limit", IstioMetadataKey, len(s), maxMetadataField)
		}
	}
	return w, true, nil
}

// ServiceMetadata is a cluster's destination service.
type ServiceMetadata struct {
	Host, Name, Namespace string
}

// Metadata is the cluster metadata that carries s.
func (s ServiceMetadata) Metadata() *corev3.Metadata {
	svc := structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
		"host":      structpb.NewStringValue(s.Host),
		"name":      structpb.NewStringValue(s.Name),
		"namespace": structpb.NewStringValue(s.Namespace),
	}})
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{IstioMetadataKey: {Fields: map[string]*structpb.Value{
		ServicesKey: structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{svc}}),
	}}}}
}

// ParseService reads a cluster's first destination service from its
// metadata; ok false when it has none.
func ParseService(md *corev3.Metadata) (ServiceMetadata, bool, error) {
	list := md.GetFilterMetadata()[IstioMetadataKey].GetFields()[ServicesKey].GetListValue().GetValues()
	if len(list) == 0 {
		return ServiceMetadata{}, false, nil
	}
	f := list[0].GetStructValue().GetFields()
	s := ServiceMetadata{Host: f["host"].GetStringValue(), Name: f["name"].GetStringValue(), Namespace: f["namespace"].GetStringValue()}
	if s.Host == "" {
		return ServiceMetadata{}, false, fmt.Errorf("metadata.filter_metadata.%s.%s[0].host: required", IstioMetadataKey, ServicesKey)
	}
	for _, v := range []string{s.Host, s.Name, s.Namespace} {
		if len(v) > maxMetadataField {
			return ServiceMetadata{}, false, fmt.Errorf("metadata.filter_metadata.%s.%s[0]: a field of %d bytes is over the %d-byte limit", IstioMetadataKey, ServicesKey, len(v), maxMetadataField)
		}
	}
	return s, true, nil
}
