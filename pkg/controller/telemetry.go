package controller

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	meshconfig "istio.io/api/mesh/v1alpha1"
	tpb "istio.io/api/telemetry/v1alpha1"
	typev1beta1 "istio.io/api/type/v1beta1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
)

// Istio's Telemetry resource (telemetry.istio.io) sets each proxy's trace
// sampling and access logs, resolved as istiod does
// (pilot/pkg/model/telemetry.go): the root namespace's namespace-wide
// Telemetry, then the proxy's namespace's, then those selecting the proxy
// (selector for a sidecar, targetRefs naming a waypoint's or gateway's
// Gateway), each overriding what the one before set. Providers are named
// in the mesh config's extensionProviders (Options.Mesh): an opentelemetry
// provider sends spans to the proxy's own --otlp-endpoint, an
// envoyFileAccessLog provider names the log's path and format. Without a
// Telemetry that applies, the controller's flags (Options.TraceSampling,
// Options.AccessLog) decide.

// gatewayNameLabel is the label Istio puts on a waypoint's or gateway's
// pods: the name of the Gateway they implement.
const gatewayNameLabel = "gateway.networking.k8s.io/gateway-name"

// defaultSampling is Istio's sampling when neither a Telemetry nor the
// mesh (PILOT_TRACE_SAMPLING) says one.
const defaultSampling = 1.0

// telemetryIndex holds the Telemetries in force, by namespace, oldest
// first (each the last valid version of its object).
type telemetryIndex struct {
	byNamespace map[string][]*telemetryv1.Telemetry
	providers   map[string]*meshconfig.MeshConfig_ExtensionProvider
	defaults    *meshconfig.MeshConfig_DefaultProviders
}

// telemetryMemory remembers the last valid version of each Telemetry, so
// an invalid update leaves the previous one in force.
type telemetryMemory struct {
	mu        sync.Mutex
	lastValid map[string]*telemetryv1.Telemetry
}

// buildTelemetry indexes the Telemetries of in, warning of each invalid
// one (by namespace/name and field) and keeping its last valid version.
func (b *Builder) buildTelemetry(ix *Index, in *Inputs) {
	ix.telemetry.providers = meshProviders(ix.opts.Mesh)
	ix.telemetry.defaults = ix.opts.Mesh.GetDefaultProviders()
	ix.telemetry.byNamespace = map[string][]*telemetryv1.Telemetry{}
	b.telemetries.mu.Lock()
	defer b.telemetries.mu.Unlock()
	if b.telemetries.lastValid == nil {
		b.telemetries.lastValid = map[string]*telemetryv1.Telemetry{}
	}
	seen := map[string]bool{}
	list := slices.Clone(in.Telemetries)
	sortByAge(list)
	for _, t := range list {
		k := key(t)
		seen[k] = true
		inForce := t
		if err := ix.telemetry.check(t); err != nil {
			inForce = b.telemetries.lastValid[k]
			kept := "it is not applied"
			if inForce != nil {
				kept = "its last valid version stays in force"
			}
			ix.warnings = append(ix.warnings, fmt.Sprintf("Telemetry %s: %v; %s", k, err, kept))
		} else {
			b.telemetries.lastValid[k] = t
			ix.warnings = append(ix.warnings, telemetryWarnings(t)...)
		}
		if inForce != nil {
			ix.telemetry.byNamespace[t.Namespace] = append(ix.telemetry.byNamespace[t.Namespace], inForce)
		}
	}
	for k := range b.telemetries.lastValid {
		if !seen[k] {
			delete(b.telemetries.lastValid, k)
		}
	}
}

// meshProviders are the mesh config's extension providers by name, with
// Istio's built-in "envoy" (a text log to /dev/stdout) unless redefined.
func meshProviders(mesh *meshconfig.MeshConfig) map[string]*meshconfig.MeshConfig_ExtensionProvider {
	out := map[string]*meshconfig.MeshConfig_ExtensionProvider{
		"envoy": {Name: "envoy", Provider: &meshconfig.MeshConfig_ExtensionProvider_EnvoyFileAccessLog{
			EnvoyFileAccessLog: &meshconfig.MeshConfig_ExtensionProvider_EnvoyFileAccessLogProvider{Path: "/dev/stdout"},
		}},
	}
	for _, p := range mesh.GetExtensionProviders() {
		out[strings.ToLower(p.GetName())] = p
	}
	return out
}

// check refuses what the proxies cannot apply: a sampling percentage out
// of 0-100, a provider the mesh config does not define, or one of a kind
// the proxy does not export to. The error names the field.
func (tx *telemetryIndex) check(t *telemetryv1.Telemetry) error {
	for i, tr := range t.Spec.GetTracing() {
		if p := tr.GetRandomSamplingPercentage(); p != nil && (p.GetValue() < 0 || p.GetValue() > 100) {
			return fmt.Errorf("spec.tracing[%d].randomSamplingPercentage: %v is not from 0 to 100", i, p.GetValue())
		}
		for j, ref := range tr.GetProviders() {
			if err := tx.checkProvider(ref.GetName(), tracingProvider); err != nil {
				return fmt.Errorf("spec.tracing[%d].providers[%d].name: %w", i, j, err)
			}
		}
	}
	for i, al := range t.Spec.GetAccessLogging() {
		for j, ref := range al.GetProviders() {
			if err := tx.checkProvider(ref.GetName(), accessLogProvider); err != nil {
				return fmt.Errorf("spec.accessLogging[%d].providers[%d].name: %w", i, j, err)
			}
		}
	}
	return nil
}

type providerUse int

const (
	tracingProvider providerUse = iota
	accessLogProvider
)

func (tx *telemetryIndex) checkProvider(name string, use providerUse) error {
	p := tx.providers[strings.ToLower(name)]
	switch {
	case p == nil:
		return fmt.Errorf("%q is not a provider of the mesh config's extensionProviders", name)
	case use == tracingProvider && p.GetOpentelemetry() == nil:
		return fmt.Errorf("provider %q is not an opentelemetry provider, the only kind of tracing provider Rosetta's proxies export to", name)
	case use == accessLogProvider && p.GetEnvoyFileAccessLog() == nil:
		return fmt.Errorf("provider %q is not an envoyFileAccessLog provider, the only kind of access log provider Rosetta's proxies write", name)
	}
	return nil
}

// telemetryWarnings name the fields of a valid Telemetry the proxies do
// not apply.
func telemetryWarnings(t *telemetryv1.Telemetry) []string {
	var out []string
	warn := func(field, why string) {
		out = append(out, fmt.Sprintf("Telemetry %s: %s: %s", key(t), field, why))
	}
	for i, tr := range t.Spec.GetTracing() {
		for field, set := range map[string]bool{
			"customTags":                   len(tr.GetCustomTags()) > 0,
			"useRequestIdForTraceSampling": tr.GetUseRequestIdForTraceSampling() != nil,
			"enableIstioTags":              tr.GetEnableIstioTags() != nil,
			"disableContextPropagation":    tr.GetDisableContextPropagation() != nil,
		} {
			if set {
				warn(fmt.Sprintf("spec.tracing[%d].%s", i, field), "not supported, ignored")
			}
		}
		if tr.GetMatch().GetMode() == tpb.WorkloadMode_CLIENT {
			warn(fmt.Sprintf("spec.tracing[%d].match.mode", i), "CLIENT only: a Rosetta proxy traces as a server, ignored")
		}
	}
	for i, al := range t.Spec.GetAccessLogging() {
		if al.GetFilter() != nil {
			warn(fmt.Sprintf("spec.accessLogging[%d].filter", i), "CEL filters are not supported: every request is logged")
		}
	}
	for i, ref := range targetRefsOf(t) {
		if ref.GetKind() != "Gateway" {
			warn(fmt.Sprintf("spec.targetRefs[%d]", i), fmt.Sprintf("kind %s is not supported (only Gateway), ignored", ref.GetKind()))
		}
	}
	if len(t.Spec.GetMetrics()) > 0 {
		warn("spec.metrics", "not supported: the proxies' Istio metrics are on unless rosetta-proxy --istio-metrics=false")
	}
	return out
}

func targetRefsOf(t *telemetryv1.Telemetry) []*typev1beta1.PolicyTargetReference {
	refs := t.Spec.GetTargetRefs()
	if r := t.Spec.GetTargetRef(); r != nil {
		refs = append([]*typev1beta1.PolicyTargetReference{r}, refs...)
	}
	return refs
}

// namespaceWide reports whether a Telemetry applies to its whole
// namespace (no selector, no targetRefs).
func namespaceWide(t *telemetryv1.Telemetry) bool {
	return len(t.Spec.GetSelector().GetMatchLabels()) == 0 && len(targetRefsOf(t)) == 0
}

// forProxy are the Telemetries that apply to p, the weakest first: the
// root namespace's namespace-wide one, p's namespace's, then those that
// select p. Only the oldest namespace-wide Telemetry of a namespace counts.
func (tx *telemetryIndex) forProxy(p *Proxy, root string) []*telemetryv1.Telemetry {
	var out []*telemetryv1.Telemetry
	wide := func(ns string) {
		for _, t := range tx.byNamespace[ns] {
			if namespaceWide(t) {
				out = append(out, t)
				return
			}
		}
	}
	wide(root)
	if p.Namespace != root {
		wide(p.Namespace)
	}
	for _, t := range tx.byNamespace[p.Namespace] {
		if !namespaceWide(t) && selects(t, p) {
			out = append(out, t)
		}
	}
	return out
}

// selects reports whether a workload Telemetry names p: by its selector's
// labels, or by a targetRef to the Gateway p implements.
func selects(t *telemetryv1.Telemetry, p *Proxy) bool {
	if m := t.Spec.GetSelector().GetMatchLabels(); len(m) > 0 {
		return labels.SelectorFromSet(m).Matches(labels.Set(p.Labels))
	}
	gw := p.Labels[gatewayNameLabel]
	for _, ref := range targetRefsOf(t) {
		if gw != "" && ref.GetKind() == "Gateway" && ref.GetName() == gw &&
			(ref.GetGroup() == "" || ref.GetGroup() == "gateway.networking.k8s.io") {
			return true
		}
	}
	return false
}

// tracing is the listeners' tracing for a proxy under ts: nil when off.
// As in istiod, the last Telemetry that sets a field wins, a provider
// (named, or the mesh's default) is needed, and disableSpanReporting
// turns tracing off. Without a Telemetry's tracing or a default provider,
// the flag's setting stays.
func (tx *telemetryIndex) tracing(ts []*telemetryv1.Telemetry, flag *float64) *configv1alpha1.Tracing {
	provider := ""
	if d := tx.defaults.GetTracing(); len(d) > 0 {
		provider = d[0]
	}
	configured := provider != ""
	var sampling *float64
	disabled := false
	for _, t := range ts {
		for _, tr := range t.Spec.GetTracing() {
			if tr.GetMatch().GetMode() == tpb.WorkloadMode_CLIENT {
				continue
			}
			configured = true
			if ps := tr.GetProviders(); len(ps) > 0 {
				provider = ps[0].GetName()
			}
			if d := tr.GetDisableSpanReporting(); d != nil {
				disabled = d.GetValue()
			}
			if s := tr.GetRandomSamplingPercentage(); s != nil {
				v := s.GetValue()
				sampling = &v
			}
		}
	}
	if !configured {
		if flag == nil {
			return nil
		}
		return &configv1alpha1.Tracing{RandomSamplingPercentage: *flag}
	}
	if disabled || tx.providers[strings.ToLower(provider)].GetOpentelemetry() == nil {
		return nil
	}
	switch {
	case sampling != nil:
	case flag != nil:
		sampling = flag
	default:
		v := defaultSampling
		sampling = &v
	}
	return &configv1alpha1.Tracing{RandomSamplingPercentage: *sampling}
}

// accessLog is the listeners' access log for a proxy under ts: nil when
// off. As in istiod, a Telemetry's providers replace those before it (the
// mesh's default providers first) and disabled turns logs off. The first
// file provider names the path and format; the flag's fields and sample
// rate stay. Without a Telemetry's accessLogging or a default provider,
// the flag's setting stays.
func (tx *telemetryIndex) accessLog(ts []*telemetryv1.Telemetry, flag *configv1alpha1.AccessLog) *configv1alpha1.AccessLog {
	providers := tx.defaults.GetAccessLogging()
	configured := len(providers) > 0
	disabled := false
	for _, t := range ts {
		for _, al := range t.Spec.GetAccessLogging() {
			if m := al.GetMatch().GetMode(); al.GetMatch() != nil && m == tpb.WorkloadMode_CLIENT {
				continue
			}
			configured = true
			if ps := al.GetProviders(); len(ps) > 0 {
				providers = providerNames(ps)
			}
			if d := al.GetDisabled(); d != nil {
				disabled = d.GetValue()
			}
		}
	}
	if !configured {
		return flag
	}
	if disabled {
		return nil
	}
	for _, name := range providers {
		if f := tx.providers[strings.ToLower(name)].GetEnvoyFileAccessLog(); f != nil {
			return fileAccessLog(f, flag)
		}
	}
	return nil
}

func providerNames(ps []*tpb.ProviderRef) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.GetName()
	}
	return out
}

// fileAccessLog is the access log an envoyFileAccessLog provider asks for:
// its path, JSON when it logs labels, the flag's fields and sample rate.
func fileAccessLog(f *meshconfig.MeshConfig_ExtensionProvider_EnvoyFileAccessLogProvider, flag *configv1alpha1.AccessLog) *configv1alpha1.AccessLog {
	out := &configv1alpha1.AccessLog{Path: f.GetPath()}
	if out.Path == "" {
		out.Path = "/dev/stdout"
	}
	if f.GetLogFormat().GetLabels() != nil {
		out.Format = configv1alpha1.AccessLog_JSON
	}
	if flag != nil {
		out.Fields = flag.Fields
		out.SamplePercent = flag.SamplePercent
	}
	return out
}

// observability is the tracing and access log of the proxy's listeners:
// the Telemetries' that apply to it, else the flags'.
func (g *Generation) observability() (*configv1alpha1.Tracing, *configv1alpha1.AccessLog) {
	tx := &g.ix.telemetry
	ts := tx.forProxy(g.proxy, g.ix.opts.RootNamespace)
	return tx.tracing(ts, g.ix.opts.TraceSampling), tx.accessLog(ts, g.ix.opts.AccessLog)
}

// ParseMeshConfig reads Istio's mesh config (the YAML of the istio
// ConfigMap's "mesh" key, which istiod reads from --meshConfig), refusing
// fields the MeshConfig does not have.
func ParseMeshConfig(data []byte) (*meshconfig.MeshConfig, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("controller: mesh config: %w", err)
	}
	mc := &meshconfig.MeshConfig{}
	if len(bytes.TrimSpace(js)) == 0 || string(bytes.TrimSpace(js)) == "null" {
		return mc, nil
	}
	if err := protojson.Unmarshal(js, mc); err != nil {
		return nil, fmt.Errorf("controller: mesh config: %w", err)
	}
	for i, p := range mc.GetExtensionProviders() {
		if p.GetName() == "" {
			return nil, fmt.Errorf("controller: mesh config: extensionProviders[%d].name: empty", i)
		}
	}
	return mc, nil
}
