package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
)

// Distinctive passwords: the server's, one the secret file is changed to,
// and the one clients give the proxy (inline in the config, the old way).
const (
	serverPassword = "Sv-3d81f0-Qm4wTe"
	otherPassword  = "Ot-a27c55-Jr8nBd"
	inlinePassword = "In-60e9b2-Lc5vXs"
)

// staticRedisConfig is a proxy with one Redis listener whose upstream
// password is the secret NAME read from a file (password_secret), and
// whose clients' password is still given inline.
const staticRedisConfig = `
listeners:
- name: cache
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
  filter_chains:
  - filters:
    - name: rosetta.metaprotocol
      typed_config:
        "@type": type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy
        codec: redis
        codec_options: {upstream_password_secret: %s, password: ` + inlinePassword + `}
        route_config: {name: r, routes: [{name: all, route: {cluster: cache}}]}
clusters:
- name: cache
  connect_timeout: 1s
  load_assignment:
    cluster_name: cache
    endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
secrets:
- name: cache-password
  generic_secret: {secret: {filename: %s}}
`

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func noSecret(t *testing.T, where, text string) {
	t.Helper()
	for _, pw := range []string{serverPassword, otherPassword, inlinePassword} {
		if strings.Contains(text, pw) || strings.Contains(text, base64.StdEncoding.EncodeToString([]byte(pw))) {
			t.Errorf("%s shows the password %s:\n%s", where, pw, text)
		}
	}
}

// TestStaticSecretFromFile: a static config names its upstream password as
// a secret read from a file; the proxy logs in to a real redis-server with
// requirepass. rosettactl dump and validate, the proxy's debug log, a
// refused AUTH after the file changes (read again when the config is
// applied again), a reference to a missing secret and the clients' wrong
// password show no password, inline or not.
func TestStaticSecretFromFile(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	redisAddr := testutil.RedisServer(t, "--requirepass", serverPassword)
	host, port, _ := strings.Cut(redisAddr, ":")
	pwFile := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(pwFile, []byte(serverPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := writeFile(t, fmt.Sprintf(staticRedisConfig, "cache-password", host, port, pwFile))
	apply := func(px *proxy.Proxy, path string) error {
		b, err := config.LoadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return px.Apply(b.Resources)
	}

	px := proxy.New(log)
	defer px.Shutdown(context.Background()) //nolint:errcheck // the test is over
	if err := apply(px, cfgPath); err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(px.AdminHandler())
	defer admin.Close()
	addr, _ := px.Addr("cache")
	cx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := goredis.NewClient(&goredis.Options{Addr: addr, Password: inlinePassword})
	defer c.Close()
	if err := c.Set(cx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the proxy, its upstream password from a file: %v", err)
	}
	if v, err := c.Get(cx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v", v, err)
	}

	dump := mustRun(t, "dump", "--admin", admin.URL, "-o", "json")
	for _, want := range []string{`"upstream_password_secret": "cache-password"`, `"password": "[redacted]"`, `"filename": "` + pwFile + `"`} {
		if !strings.Contains(dump, want) {
			t.Errorf("rosettactl dump lacks %s:\n%s", want, dump)
		}
	}
	noSecret(t, "rosettactl dump", dump)
	noSecret(t, "rosettactl validate", mustRun(t, "validate", cfgPath))

	// The file changes; applying the config again reads it again.
	if err := os.WriteFile(pwFile, []byte(otherPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := apply(px, cfgPath); err != nil {
		t.Fatal(err)
	}
	fresh := goredis.NewClient(&goredis.Options{Addr: addr, Password: inlinePassword, MaxRetries: -1})
	defer fresh.Close()
	err := fresh.Get(cx, "k").Err()
	if err == nil || !strings.Contains(err.Error(), "upstream refused the proxy's AUTH") {
		t.Fatalf("GET after the password file changed: %v, want a refused AUTH", err)
	}
	noSecret(t, "the error of a refused upstream AUTH", err.Error())

	wrong := goredis.NewClient(&goredis.Options{Addr: addr, Password: otherPassword, MaxRetries: -1})
	defer wrong.Close()
	if err := wrong.Ping(cx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("a client with a wrong password: %v", err)
	} else {
		noSecret(t, "the error a client with a wrong password gets", err.Error())
	}

	// A reference to a secret the config lacks is refused, naming the field.
	missing := writeFile(t, fmt.Sprintf(staticRedisConfig, "nope", host, port, pwFile))
	err = apply(px, missing)
	if err == nil || !strings.Contains(err.Error(), `codec_options.upstream_password_secret: no secret named "nope"`) {
		t.Fatalf("a reference to a missing secret: %v", err)
	}
	noSecret(t, "the refusal of a missing secret", err.Error())
	out, verr := run(t, "validate", missing)
	if verr == nil {
		t.Fatalf("rosettactl validate accepts a missing secret:\n%s", out)
	}
	noSecret(t, "rosettactl validate of a bad config", out+verr.Error())

	noSecret(t, "rosettactl dump after the changes", mustRun(t, "dump", "--admin", admin.URL, "-o", "json"))
	if !strings.Contains(logs.String(), "config applied") {
		t.Errorf("the proxy's log was not captured:\n%s", logs.String())
	}
	noSecret(t, "the proxy's log", logs.String())
}
