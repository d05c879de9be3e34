package config

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
)

// Credentials travel as Envoy's SDS Secret resources, never as plain codec
// options: a listener's codec option "<option>_secret: NAME" stands for the
// option <option> with the value of the generic_secret NAME, which the
// proxy reads when it applies the config. Dumps show the reference, not the
// value.
const (
	// SecretType is the xDS type URL of a Secret.
	SecretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
	// SecretRefSuffix ends the name of a codec option that names a secret.
	SecretRefSuffix = "_secret"
	// RedactedValue replaces a credential in dumps.
	RedactedValue = "[redacted]"
)

// IsCredentialOption reports whether a codec option holds a credential by
// its name: password, token, or a name ending in _password or _token. Codecs
// name their credential options so, and dumps redact them when a config
// still gives one inline. The option of one protocol on a listener whose
// codec is "auto" ("redis.password") is judged by its name after the dot.
func IsCredentialOption(name string) bool {
	name = name[strings.LastIndexByte(name, '.')+1:]
	for _, w := range []string{"password", "token"} {
		if name == w || strings.HasSuffix(name, "_"+w) {
			return true
		}
	}
	return false
}

// Redacted returns a copy of res fit to show: the values of secrets and of
// inline credential options are replaced by RedactedValue. Where a secret
// comes from (a file, an environment variable) is kept: it names a value,
// it does not hold one. res is not modified.
func Redacted(res Resources) Resources {
	out := res
	out.Secrets = make([]*tlsv3.Secret, 0, len(res.Secrets))
	for _, s := range res.Secrets {
		out.Secrets = append(out.Secrets, redactedSecret(s))
	}
	out.Listeners = make([]*listenerv3.Listener, 0, len(res.Listeners))
	for _, l := range res.Listeners {
		out.Listeners = append(out.Listeners, redactedListener(l))
	}
	return out
}

// redactedSecret keeps a generic secret's sources and drops every other
// kind of secret's content: a tls_certificate (a listener's own
// certificate) shows its name only, so its private key never reaches a
// dump; a validation_context holds no credential, but shows no more.
func redactedSecret(s *tlsv3.Secret) *tlsv3.Secret {
	out := &tlsv3.Secret{Name: s.GetName()}
	g := s.GetGenericSecret()
	if g == nil {
		return out
	}
	rg := &tlsv3.GenericSecret{Secret: redactedSource(g.GetSecret())}
	if len(g.GetSecrets()) > 0 {
		rg.Secrets = map[string]*corev3.DataSource{}
		for k, v := range g.GetSecrets() {
			rg.Secrets[k] = redactedSource(v)
		}
	}
	out.Type = &tlsv3.Secret_GenericSecret{GenericSecret: rg}
	return out
}

func redactedSource(d *corev3.DataSource) *corev3.DataSource {
	switch d.GetSpecifier().(type) {
	case nil:
		return d
	case *corev3.DataSource_Filename, *corev3.DataSource_EnvironmentVariable:
		return proto.Clone(d).(*corev3.DataSource)
	}
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: RedactedValue}}
}

// redactedListener replaces inline credential options in the listener's
// MetaProtocolProxy filters; l itself is returned when it has none.
func redactedListener(l *listenerv3.Listener) *listenerv3.Listener {
	var out *listenerv3.Listener
	for i, fc := range l.GetFilterChains() {
		for j, f := range fc.GetFilters() {
			a, changed := redactedFilter(f)
			if !changed {
				continue
			}
			if out == nil {
				out = proto.Clone(l).(*listenerv3.Listener)
			}
			out.FilterChains[i].Filters[j].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
		}
	}
	if out == nil {
		return l
	}
	return out
}

// redactedFilter is a MetaProtocolProxy filter's config with its inline
// credential options redacted; changed is false when there were none (or
// the filter is another one, or does not decode: the proxy refuses it).
func redactedFilter(f *listenerv3.Filter) (a *anypb.Any, changed bool) {
	if f.GetName() != FilterName {
		return nil, false
	}
	mp := &configv1alpha1.MetaProtocolProxy{}
	if err := f.GetTypedConfig().UnmarshalTo(mp); err != nil {
		return nil, false
	}
	for k := range mp.GetCodecOptions() {
		if IsCredentialOption(k) {
			mp.CodecOptions[k] = RedactedValue
			changed = true
		}
	}
	if !changed {
		return nil, false
	}
	a, err := anypb.New(mp)
	if err != nil {
		// Cannot happen for a message that just decoded; show nothing
		// rather than the value.
		return &anypb.Any{TypeUrl: f.GetTypedConfig().GetTypeUrl()}, true
	}
	return a, true
}

// SecretNames lists the secrets a set of codec options names, as
// "option: secret" pairs, for error messages and checks.
func SecretNames(opts map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range opts {
		if strings.HasSuffix(k, SecretRefSuffix) {
			out[k] = v
		}
	}
	return out
}
