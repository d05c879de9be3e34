package config

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
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
