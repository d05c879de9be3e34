package proxy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// maxSecretBytes caps a secret read from a file: a credential is small, and
// a wrong path (a log, a device) must not fill memory.
const maxSecretBytes = 64 << 10

// secretSet is the secrets of one config, by name. Values are read when a
// listener names them, once per Apply, so a secret file is read again each
// time a config is applied. Errors name the secret and the field, never
// the value.
type secretSet struct {
	byName map[string]*tlsv3.Secret
	values map[string]string
}

func newSecretSet(list []*tlsv3.Secret) (*secretSet, error) {
	s := &secretSet{byName: map[string]*tlsv3.Secret{}, values: map[string]string{}}
	for i, sec := range list {
		switch {
		case sec.GetName() == "":
			return nil, fmt.Errorf("secrets[%d].name: must not be empty", i)
		case s.byName[sec.GetName()] != nil:
			return nil, fmt.Errorf("secrets[%d].name: %q is defined twice", i, sec.GetName())
		}
		s.byName[sec.GetName()] = sec
	}
	return s, nil
}

// resolve replaces each option "<name>_secret: SECRET" by "<name>: value"
// and returns the options the codec gets; opts is not modified.
func (s *secretSet) resolve(opts codec.Options) (codec.Options, error) {
	refs := config.SecretNames(opts)
	if len(refs) == 0 {
		return opts, nil
	}
	out := codec.Options{}
	for k, v := range opts {
		if _, ref := refs[k]; !ref {
			out[k] = v
		}
	}
	for k, name := range refs {
		target := strings.TrimSuffix(k, config.SecretRefSuffix)
		if _, inline := opts[target]; inline {
			return nil, fmt.Errorf("codec_options.%s: %s is given inline too; give one of them", k, target)
		}
		v, err := s.value(name)
		if err != nil {
			return nil, fmt.Errorf("codec_options.%s: %w", k, err)
		}
		out[target] = v
	}
	return out, nil
}

// value is the content of the generic secret name.
func (s *secretSet) value(name string) (string, error) {
	if v, ok := s.values[name]; ok {
		return v, nil
	}
	sec := s.byName[name]
	if sec == nil {
		return "", fmt.Errorf("no secret named %q (secrets come over SDS, or under secrets in a static config)", name)
	}
	g := sec.GetGenericSecret()
	if g.GetSecret().GetSpecifier() == nil {
		return "", fmt.Errorf("secret %q: generic_secret.secret: one of inline_string, inline_bytes, filename or environment_variable is required (no other kind of secret holds a credential)", name)
	}
	v, err := readSource(g.GetSecret())
	if err != nil {
		return "", fmt.Errorf("secret %q: generic_secret.secret.%w", name, err)
	}
	if v == "" {
		// An empty password would turn authentication off without a word.
		return "", fmt.Errorf("secret %q: generic_secret.secret: is empty", name)
	}
	s.values[name] = v
	return v, nil
}

// readSource reads a DataSource; the error starts with the field's name.
// A file's one trailing newline is dropped: files written with echo have
// one, and no credential ends with it.
func readSource(d *corev3.DataSource) (string, error) {
	switch sp := d.GetSpecifier().(type) {
	case *corev3.DataSource_InlineString:
		return sp.InlineString, nil
	case *corev3.DataSource_InlineBytes:
		return string(sp.InlineBytes), nil
	case *corev3.DataSource_EnvironmentVariable:
		v, ok := os.LookupEnv(sp.EnvironmentVariable)
		if !ok {
			return "", fmt.Errorf("environment_variable: %s is not set", sp.EnvironmentVariable)
		}
		return v, nil
	case *corev3.DataSource_Filename:
		v, err := readSecretFile(sp.Filename)
		if err != nil {
			return "", fmt.Errorf("filename: %w", err)
		}
		return v, nil
	}
	return "", errors.New("specifier: unknown")
}

func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretBytes+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxSecretBytes {
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxSecretBytes)
	}
	v := strings.TrimSuffix(string(b), "\n")
	return strings.TrimSuffix(v, "\r"), nil
}
