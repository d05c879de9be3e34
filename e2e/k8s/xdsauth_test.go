package k8s

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/xds"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
	"github.com/rosetta-mesh/rosetta/pkg/xds/xdstest"
)

// scopedGreeter is a greeter service of namespace ns visible in ns only
// (exportTo "."), with a MetaRouter: its listener reaches proxies of ns
// and no others. Its port is one no other test's service has: a proxy
// gets one listener per port number, so a service of another test
// exported everywhere on the same port would take it.
const scopedGreeterPort = 20979

func scopedGreeter(ns, ip string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: greeter
  namespace: %[1]s
  annotations: {networking.istio.io/exportTo: "."}
spec:
  ports: [{name: tcp-dubbo-greeter, port: %[3]d, targetPort: %[3]d}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter
  namespace: %[1]s
  labels: {kubernetes.io/service-name: greeter, endpointslice.kubernetes.io/managed-by: e2e}
addressType: IPv4
ports: [{name: tcp-dubbo-greeter, port: %[3]d}]
endpoints: [{addresses: [%[2]s]}]
---
apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: greeter, namespace: %[1]s}
spec:
  hosts: [greeter.%[1]s.svc.cluster.local]
  exportTo: ["."]
  routes:
  - route: [{destination: {host: greeter.%[1]s.svc.cluster.local}}]
`, ns, ip, scopedGreeterPort)
}

// startTokenClient runs the proxy's xDS client as node id claiming
// namespace claim, with the token in tokenFile, over TLS verified by
// caFile.
func startTokenClient(t *testing.T, addr, id, claim, tokenFile, caFile string) *recorder {
	t.Helper()
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- client.Run(ctx, client.Options{Address: addr, NodeID: id, Namespace: claim, ListenAddress: "127.0.0.1",
			CAFile: caFile, ServerName: xdsServerName, TokenFile: tokenFile,
			Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
			InitialBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}, rec.apply)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("client.Run: %v", err)
		}
	})
	return rec
}

const xdsServerName = "rosetta-controller.rosetta-system.svc"

// TestXDSTokenAuth: the controller serves xDS over TLS and authenticates
// proxies by their ServiceAccount tokens with TokenReview on the real API
// server, as the chart's ServiceAccount (so its RBAC must allow creating
// tokenreviews). A proxy with xds-alpha's token gets xds-alpha's config
// and nothing of xds-beta's though it claims xds-beta; one with
// xds-beta's token claiming xds-alpha gets nothing of xds-alpha's; a token
// with istiod's audience, a token of a deleted ServiceAccount and no token
// are refused.
func TestXDSTokenAuth(t *testing.T) {
	c := needCluster(t)
	alpha, beta := "xds-alpha", "xds-beta"
	for i, ns := range []string{alpha, beta} {
		c.MustNamespace(t, ns)
		c.ServiceAccount(t, ns, "proxy")
		c.Apply(t, scopedGreeter(ns, fmt.Sprintf("192.0.2.%d", 20+i)))
	}
	port := "_" + strconv.Itoa(scopedGreeterPort)
	alphaListener, betaListener := "greeter."+alpha+".svc.cluster.local"+port, "greeter."+beta+".svc.cluster.local"+port

	ca := xdstest.NewCA(t, "serving")
	certPEM, keyPEM := ca.Serving(t, xdsServerName)
	caFile := xdstest.WriteFile(t, "ca.crt", ca.RootPEM())
	ctrl := c.StartController(t, ctrlBin, "", "", "--xds-auth=token",
		"--xds-tls-cert="+xdstest.WriteFile(t, "tls.crt", certPEM), "--xds-tls-key="+xdstest.WriteFile(t, "tls.key", keyPEM))

	// gets waits for rec to get want, and checks it never got notWant.
	gets := func(rec *recorder, want, notWant string) {
		t.Helper()
		err := testutil.Poll(15*time.Second, want, func() (bool, error) {
			r, _, _ := rec.last()
			names := listenerNames(r)
			if slices.Contains(names, notWant) {
				t.Fatalf("the proxy got %v, including %s", names, notWant)
			}
			return slices.Contains(names, want), fmt.Errorf("listeners %v", names)
		})
		if err != nil {
			t.Fatalf("%v (a missing tokenreviews RBAC rule shows as token_review_unavailable); controller log:\n%s", err, ctrl.LogTail(3000))
		}
	}
	a := startTokenClient(t, ctrl.XDSAddr, "alpha-proxy", beta, c.TokenFile(t, alpha, "proxy", time.Hour, xds.DefaultTokenAudience), caFile)
	gets(a, alphaListener, betaListener)
	b := startTokenClient(t, ctrl.XDSAddr, "beta-proxy", alpha, c.TokenFile(t, beta, "proxy", time.Hour, xds.DefaultTokenAudience), caFile)
	gets(b, betaListener, alphaListener)
	time.Sleep(300 * time.Millisecond) // a wrong push would have come by now
	for name, rec := range map[string]*recorder{"alpha's": a, "beta's": b} {
		// Other tests' services exported everywhere reach every proxy; of
		// these two namespaces' listeners, each proxy has its own only.
		r, _, _ := rec.last()
		var ours []string
		for _, n := range listenerNames(r) {
			if strings.Contains(n, "."+alpha+".") || strings.Contains(n, "."+beta+".") {
				ours = append(ours, n)
			}
		}
		if len(ours) != 1 {
			t.Errorf("the proxy with %s token has listeners %v of %s and %s, want one", name, ours, alpha, beta)
		}
	}

	trusting, err := xdstest.Presenting(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.ServiceAccount(t, alpha, "gone")
	gone := c.Token(t, alpha, "gone", time.Hour, xds.DefaultTokenAudience)
	c.MustKubectl(t, "", "delete", "serviceaccount", "gone", "-n", alpha)
	// The controller caches answers: ask the API server itself until it
	// refuses the token, before the controller sees it.
	if err := testutil.Poll(10*time.Second, "the deleted account's token refused", func() (bool, error) {
		out, err := c.Kubectl(tokenReview(gone), "create", "-o", "jsonpath={.status.authenticated}", "-f", "-")
		return err == nil && strings.TrimSpace(out) != "true", err
	}); err != nil {
		t.Fatal(err)
	}
	for what, md := range map[string]metadata.MD{
		"istiod's audience": metadata.Pairs("authorization", "Bearer "+c.Token(t, alpha, "proxy", time.Hour, "istio-ca")),
		"a deleted account": metadata.Pairs("authorization", "Bearer "+gone),
		"no token":          nil,
	} {
		names, err := xdstest.Listeners(ctrl.XDSAddr, trusting, md, "refused", alpha)
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: got %v, %v; want Unauthenticated", what, names, err)
		}
	}
	metrics := metricsOf(t, ctrl)
	if n := metricValue(metrics, `rosetta_xds_claim_mismatches_total{field="namespace"}`); n < 2 {
		t.Errorf("%v false namespace claims counted, want 2 (or more, after reconnections)", n)
	}
	if n := metricValue(metrics, `rosetta_xds_streams_refused_total{reason="invalid_token"}`); n < 2 {
		t.Errorf("%v streams refused for an invalid token, want 2", n)
	}
}

// tokenReview is a TokenReview of token for the controller's audience.
func tokenReview(token string) string {
	return fmt.Sprintf(`{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
"spec": {"token": %q, "audiences": [%q]}}`, token, xds.DefaultTokenAudience)
}

func metricsOf(t *testing.T, ctrl *kubeenv.Controller) string {
	t.Helper()
	resp, err := http.Get("http://" + ctrl.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// metricValue is the value of the sample named series ("name{labels}")
// in a Prometheus text exposition; 0 when absent.
func metricValue(text, series string) float64 {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return 0
}
