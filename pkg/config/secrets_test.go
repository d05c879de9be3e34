package config

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
)

const redactYAML = `
listeners:
- name: cache
  address: {socket_address: {address: 127.0.0.1, port_value: 6379}}
  filter_chains:
  - filters:
    - name: rosetta.metaprotocol
      typed_config:
        "@type": type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy
        codec: redis
        route_config_name: r
        codec_options: {password: inl1ne-pw, upstream_password_secret: up, upstream_username: proxy, mode: proxy}
secrets:
- name: up
  generic_secret: {secret: {inline_string: s3cr3t-val}}
- name: fromfile
  generic_secret: {secret: {filename: /etc/rosetta/pw}}
`

// TestRedacted: a dump of a static config shows secret names, files and
// references, never an inline value; the config itself keeps its values.
func TestRedacted(t *testing.T) {
	b, err := Parse([]byte(redactYAML))
	if err != nil {
		t.Fatal(err)
	}
	before := proto.Clone(b.Listeners[0])
	red := Redacted(b.Resources)
	// protojson's spacing changes from run to run on purpose; compacted,
	// the dump can be searched.
	var dump strings.Builder
	for _, l := range red.Listeners {
		dump.WriteString(compactJSON(t, l))
	}
	for _, s := range red.Secrets {
		dump.WriteString(compactJSON(t, s))
	}
	for _, leak := range []string{"inl1ne-pw", "s3cr3t-val"} {
		if strings.Contains(dump.String(), leak) {
			t.Errorf("the redacted dump shows %q:\n%s", leak, dump.String())
		}
	}
	for _, want := range []string{`"password":"[redacted]"`, `"upstream_password_secret":"up"`, `"upstream_username":"proxy"`, `"filename":"/etc/rosetta/pw"`, `"name":"up"`} {
		if !strings.Contains(dump.String(), want) {
			t.Errorf("the redacted dump lacks %s:\n%s", want, dump.String())
		}
	}
	if !proto.Equal(before, b.Listeners[0]) || b.Secrets[0].GetGenericSecret().GetSecret().GetInlineString() != "s3cr3t-val" {
		t.Error("Redacted modified the config")
	}
}

func TestIsCredentialOption(t *testing.T) {
	for name, want := range map[string]bool{
		"password": true, "upstream_password": true, "token": true, "auth_token": true,
		"password_secret": false, "username": false, "mode": false, "passwords": false,
		"redis.password": true, "redis.upstream_password": true, "redis.mode": false, "password.mode": false,
	} {
		if IsCredentialOption(name) != want {
			t.Errorf("IsCredentialOption(%q) = %v", name, !want)
		}
	}
}

func compactJSON(t *testing.T, m proto.Message) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(protojson.Format(m))); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestRedactedTLSCertificate: a listener's own certificate secret shows
// its name in a dump, never its private key (nor, with it, its chain); the
// config keeps both.
func TestRedactedTLSCertificate(t *testing.T) {
	ca := identitytest.NewCA("edge")
	chain, key := ca.Leaf("", time.Hour)
	res := Resources{Secrets: []*tlsv3.Secret{
		certSecret("kubernetes://edge/edge-cert", chain, key),
		caSecret("kubernetes://edge/edge-cert-cacert", ca.PEM()),
	}}
	red := Redacted(res)
	var dump strings.Builder
	for _, s := range red.Secrets {
		dump.WriteString(compactJSON(t, s))
	}
	// protojson writes bytes in base64; the key's DER shows in neither
	// form.
	block, _ := pem.Decode(key)
	for _, leak := range []string{base64.StdEncoding.EncodeToString(key), base64.StdEncoding.EncodeToString(block.Bytes)[:32], string(key[40:80]), "PRIVATE KEY"} {
		if strings.Contains(dump.String(), leak) {
			t.Errorf("the redacted dump shows the key (%q):\n%s", leak, dump.String())
		}
	}
	if want := `{"name":"kubernetes://edge/edge-cert"}{"name":"kubernetes://edge/edge-cert-cacert"}`; dump.String() != want {
		t.Errorf("the redacted dump is %s, want %s", dump.String(), want)
	}
	if !bytes.Equal(res.Secrets[0].GetTlsCertificate().GetPrivateKey().GetInlineBytes(), key) {
		t.Error("Redacted modified the config")
	}
}
