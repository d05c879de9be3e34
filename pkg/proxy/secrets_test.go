package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

func genericSecret(name string, d *corev3.DataSource) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{Secret: d}}}
}

func inline(v string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: v}}
}

// TestSecretOptions: "<option>_secret: NAME" becomes "<option>: value" from
// an inline, file or environment source; what cannot be resolved is refused
// with the field and the secret named, and no error carries a value.
func TestSecretOptions(t *testing.T) {
	const value = "Zq-secret-value-91"
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ROSETTA_TEST_PW", value)
	secrets := []*tlsv3.Secret{
		genericSecret("inline", inline(value)),
		genericSecret("file", &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: file}}),
		genericSecret("env", &corev3.DataSource{Specifier: &corev3.DataSource_EnvironmentVariable{EnvironmentVariable: "ROSETTA_TEST_PW"}}),
		genericSecret("empty", inline("")),
		genericSecret("nofile", &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: filepath.Join(dir, "missing")}}),
		genericSecret("unset", &corev3.DataSource{Specifier: &corev3.DataSource_EnvironmentVariable{EnvironmentVariable: "ROSETTA_TEST_UNSET"}}),
		{Name: "tls", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{PrivateKey: inline(value)}}},
	}
	for _, tc := range []struct {
		opts    codec.Options
		wantErr string
	}{
		{opts: codec.Options{"password_secret": "inline", "mode": "proxy"}},
		{opts: codec.Options{"password_secret": "file"}},
		{opts: codec.Options{"password_secret": "env"}},
		{opts: codec.Options{"password_secret": "missing"}, wantErr: `codec_options.password_secret: no secret named "missing"`},
		{opts: codec.Options{"password_secret": "inline", "password": "x"}, wantErr: "codec_options.password_secret: password is given inline too"},
		{opts: codec.Options{"password_secret": "empty"}, wantErr: `codec_options.password_secret: secret "empty": generic_secret.secret: is empty`},
		{opts: codec.Options{"password_secret": "nofile"}, wantErr: `codec_options.password_secret: secret "nofile": generic_secret.secret.filename: open ` + filepath.Join(dir, "missing")},
		{opts: codec.Options{"password_secret": "unset"}, wantErr: `secret "unset": generic_secret.secret.environment_variable: ROSETTA_TEST_UNSET is not set`},
		{opts: codec.Options{"password_secret": "tls"}, wantErr: `secret "tls": generic_secret.secret: one of`},
	} {
		set, err := newSecretSet(secrets)
		if err != nil {
			t.Fatal(err)
		}
		got, err := set.resolve(tc.opts)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: err = %v, want %q", tc.opts, err, tc.wantErr)
			} else if strings.Contains(err.Error(), value) {
				t.Errorf("%v: the error shows the secret: %v", tc.opts, err)
			}
			continue
		}
		if err != nil || got["password"] != value || len(got) != len(tc.opts) || got["password_secret"] != "" {
			t.Errorf("%v: resolved to %v, %v", tc.opts, got, err)
		}
		if tc.opts["password"] != "" {
			t.Errorf("%v: the config's options were modified", tc.opts)
		}
	}
}

func TestSecretNamesUniqueAndSet(t *testing.T) {
	if _, err := newSecretSet([]*tlsv3.Secret{genericSecret("a", inline("x")), genericSecret("a", inline("y"))}); err == nil || err.Error() != `secrets[1].name: "a" is defined twice` {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := newSecretSet([]*tlsv3.Secret{genericSecret("", inline("x"))}); err == nil || err.Error() != "secrets[0].name: must not be empty" {
		t.Errorf("no name: %v", err)
	}
}
