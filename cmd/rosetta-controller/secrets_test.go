package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
	_ "github.com/rosetta-mesh/rosetta/protocols/redis"
)

// Distinctive passwords: the upstream's, a wrong one the Secret is later
// changed to, and the one clients give the proxy.
const (
	upstreamPassword = "Up-7f3a9c-k8Q2zt"
	wrongPassword    = "Wr-51be0d-Hx3pLm"
	clientPassword   = "Cl-c09e4a-Vn6rYw"
)

// syncBuffer is a log sink shared by several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func debugLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// noPassword fails t when text shows one of the passwords, as is or in
// base64 (protobuf bytes in JSON).
func noPassword(t *testing.T, where, text string) {
	t.Helper()
	for _, pw := range []string{upstreamPassword, wrongPassword, clientPassword} {
		if strings.Contains(text, pw) || strings.Contains(text, base64.StdEncoding.EncodeToString([]byte(pw))) {
			t.Errorf("%s shows the password %s:\n%s", where, pw, text)
		}
	}
}

const redisMeshYAML = `apiVersion: v1
kind: Service
metadata: {name: cache, namespace: demo}
spec:
  ports: [{name: redis, port: %d}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: cache-1
  namespace: demo
  labels: {kubernetes.io/service-name: cache}
addressType: IPv4
ports: [{name: redis, port: %d}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: redis.rosetta.dev/v1alpha1
kind: RedisDestination
metadata: {name: cache, namespace: demo}
spec:
  host: cache
  trafficPolicy: {connectionPool: {redis: {auth: {secret: {name: cache-auth}}}}}
---
apiVersion: redis.rosetta.dev/v1alpha1
kind: RedisService
metadata: {name: cache, namespace: demo}
spec:
  host: [cache]
  settings: {auth: {plain: {password: ` + clientPassword + `}}}
  redis: [{route: {host: cache}}]
`

func writeSecret(t *testing.T, dir, password string) {
	t.Helper()
	doc := "apiVersion: v1\nkind: Secret\nmetadata: {name: cache-auth, namespace: demo}\nstringData: {password: " + password + "}\n"
	if err := os.WriteFile(filepath.Join(dir, "secret.yaml"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestNoPasswordShows: the controller in folder mode sends Redis
// credentials to a proxy as SDS secrets; the proxy logs in to a real
// redis-server with requirepass and checks its clients' AUTH with them.
// Then the upstream password is changed to a wrong one (the proxy's AUTH
// is refused) and a client gives a wrong one. No log line (both sides, at
// debug level), no dump (the proxy's /config_dump, the controller's
// /debug/config_dump) and no error a client sees shows a password.
func TestNoPasswordShows(t *testing.T) {
	var logs syncBuffer
	prev := slog.Default()
	slog.SetDefault(debugLogger(&logs))
	defer slog.SetDefault(prev)

	redisAddr := testutil.RedisServer(t, "--requirepass", upstreamPassword)
	_, redisPort, _ := net.SplitHostPort(redisAddr)
	lport, _ := strconv.Atoi(strings.TrimPrefix(freeAddr(t), "127.0.0.1:"))
	rport, _ := strconv.Atoi(redisPort)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), fmt.Appendf(nil, redisMeshYAML, lport, rport), 0o600); err != nil {
		t.Fatal(err)
	}
	writeSecret(t, dir, upstreamPassword)

	xdsAddr, httpAddr, debugAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	f, err := parseFlags([]string{"--config-dir", dir, "--xds-address", xdsAddr, "--http-address", httpAddr, "--debug-address", debugAddr, "--debounce", "10ms"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, f, debugLogger(&logs)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	px := proxy.New(debugLogger(&logs))
	defer px.Shutdown(context.Background()) //nolint:errcheck // the test is over
	admin := httptest.NewServer(px.AdminHandler())
	defer admin.Close()
	go func() {
		_ = client.Run(ctx, client.Options{Address: xdsAddr, NodeID: "leak-proxy", Namespace: "demo", ListenAddress: "127.0.0.1", Logger: debugLogger(&logs)}, px.Apply)
	}()
	listener := controller.ListenerName("cache.demo.svc.cluster.local", uint32(lport))
	var addr string
	testutil.Eventually(t, 10*time.Second, "the proxy's Redis listener", func() bool {
		var ok bool
		addr, ok = px.Addr(listener)
		return ok
	})

	cx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	c := goredis.NewClient(&goredis.Options{Addr: addr, Password: clientPassword})
	defer c.Close()
	if err := c.Set(cx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the proxy, its upstream password from SDS: %v", err)
	}
	if v, err := c.Get(cx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v", v, err)
	}

	bad := goredis.NewClient(&goredis.Options{Addr: addr, Password: wrongPassword, MaxRetries: -1})
	defer bad.Close()
	err = bad.Ping(cx).Err()
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("a client with a wrong password: %v, want WRONGPASS", err)
	}
	noPassword(t, "the error a client with a wrong password gets", err.Error())

	dump := get200(t, admin.URL+"/config_dump")
	ctlDump := get200(t, "http://"+debugAddr+"/debug/config_dump?node=leak-proxy")
	for _, want := range []string{`"upstream_password_secret": "Secret/demo/cache-auth/password"`, `"password_secret": "RedisService/demo/cache/password"`, `"inlineString": "[redacted]"`} {
		if !strings.Contains(dump, want) || !strings.Contains(ctlDump, want) {
			t.Errorf("a dump lacks %s:\nproxy %s\ncontroller %s", want, dump, ctlDump)
		}
	}
	noPassword(t, "the proxy's /config_dump", dump)
	noPassword(t, "the controller's /debug/config_dump", ctlDump)
	noPassword(t, "the controller's node list", get200(t, "http://"+debugAddr+"/debug/config_dump"))

	// A wrong upstream password: the proxy's next connection is refused.
	writeSecret(t, dir, wrongPassword)
	var upErr error
	testutil.Eventually(t, 10*time.Second, "the proxy's AUTH to be refused", func() bool {
		fresh := goredis.NewClient(&goredis.Options{Addr: addr, Password: clientPassword, MaxRetries: -1})
		defer fresh.Close()
		upErr = fresh.Get(cx, "k").Err()
		return upErr != nil && strings.Contains(upErr.Error(), "upstream refused the proxy's AUTH")
	})
	noPassword(t, "the error of a refused upstream AUTH", upErr.Error())
	noPassword(t, "the proxy's /config_dump after the change", get200(t, admin.URL+"/config_dump"))
	noPassword(t, "the controller's /debug/config_dump after the change", get200(t, "http://"+debugAddr+"/debug/config_dump?node=leak-proxy"))
	noPassword(t, "the metrics", get200(t, "http://"+httpAddr+"/metrics"))

	if !strings.Contains(logs.String(), "config applied") || !strings.Contains(logs.String(), "level=DEBUG") {
		t.Errorf("the logs were not captured at debug level:\n%s", logs.String())
	}
	noPassword(t, "the logs", logs.String())
}

func get200(t *testing.T, url string) string {
	t.Helper()
	code, body := get(url)
	if code != 200 {
		t.Fatalf("%s: %d %s", url, code, body)
	}
	return body
}
