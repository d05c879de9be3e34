package istio

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
)

// Rosetta as an Istio waypoint: its proxy holds an istiod-issued
// certificate; callers and providers are dubbo-go peers behind stand-in
// sidecars (relay_test.go) holding certificates of their own.

// Waypoint and mesh names as Istio uses them.
const (
	// waypointSA is the waypoint's ServiceAccount in its namespace.
	waypointSA = "rosetta-waypoint"
	// waypointLabel is the label Istio puts on a waypoint's pods, with
	// the waypoint's (Gateway's) name.
	waypointLabel = "gateway.networking.k8s.io/gateway-name"
	// tlsModeLabel marks pods with a sidecar (Istio's injector sets it).
	tlsModeLabel = "security.istio.io/tlsMode"
	// istioCAAudience is the audience istiod's CA wants of tokens.
	istioCAAudience = "istio-ca"
	// dubboVersion is the version every provider here serves.
	dubboVersion = "1.0.0"
)

// spiffeID is the identity istiod's CA gives ServiceAccount ns/sa.
func spiffeID(ns, sa string) string {
	return fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", ns, sa)
}

// istioWorkload gets ServiceAccount ns/sa (created if needed) a
// certificate from istiod's CA with a TokenRequest token, as a sidecar
// would, and keeps it fresh until the test ends.
func istioWorkload(t *testing.T, c *kubeenv.Cluster, m *istiod, ns, sa string) *identity.Workload {
	t.Helper()
	c.ServiceAccount(t, ns, sa)
	w := identity.NewWorkload(&identity.IstiodSource{Addr: m.secureGRPCAddr, RootCertFile: m.rootCertFile(t, c, ns),
		TokenFile: c.TokenFile(t, ns, sa, time.Hour, istioCAAudience), ClusterID: clusterID, TTL: time.Hour}, testLogger())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := w.Start(ctx); err != nil {
		t.Fatalf("certificate of %s/%s: %v", ns, sa, err)
	}
	if got, want := w.Current().ID.String(), spiffeID(ns, sa); got != want {
		t.Fatalf("istiod issued %s for %s/%s, want %s", got, ns, sa, want)
	}
	return w
}

// podIPs hands out pod IPs; nothing listens on them.
var podIPs atomic.Int32

func nextPodIP() string { return fmt.Sprintf("10.244.1.%d", podIPs.Add(1)) }

// securedProvider is a dubbo-go provider with a sidecar: an mTLS
// terminator holding the provider's istiod-issued certificate, in front
// of the provider on loopback.
type securedProvider struct {
	*dubbokit.Provider
	// Terminator is the sidecar; its callers() are the identities that
	// called the provider.
	Terminator *relay
	// Host is the Service's host name; Port its port, free on this
	// machine, so a waypoint's listener for it can bind it.
	Host string
	Port int
}

// securedProviderConfig says what startSecuredProvider publishes.
type securedProviderConfig struct {
	Namespace, Service string
	// ServiceAccount is the Pod's, whose identity callers expect.
	ServiceAccount string
	// Name starts the provider's answers.
	Name string
	// Certificate is the ServiceAccount whose certificate the sidecar
	// holds; ServiceAccount when empty.
	Certificate string
}

// startSecuredProvider starts a dubbo-go provider behind an mTLS
// terminator holding an istiod-issued certificate, and publishes it as
// istiod and Rosetta see a pod with a sidecar: the ServiceAccount, a Ready
// Pod labelled security.istio.io/tlsMode=istio running as it, a Service
// (port tcp-dubbo) selecting the Pod, and an EndpointSlice whose endpoint
// names the Pod and is the terminator's address. The API server refuses
// loopback IPv4 endpoints, so the slice is an FQDN one (providers.localhost,
// loopback by RFC 6761) that Rosetta's controller resolves; the Pod's own
// IP is a placeholder.
func startSecuredProvider(t *testing.T, c *kubeenv.Cluster, m *istiod, cfg securedProviderConfig) *securedProvider {
	t.Helper()
	ns, svc := cfg.Namespace, cfg.Service
	cert := cfg.Certificate
	if cert == "" {
		cert = cfg.ServiceAccount
	}
	c.ServiceAccount(t, ns, cfg.ServiceAccount)
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: cfg.Name, Version: dubboVersion})
	term := mtlsTerminator(t, istioWorkload(t, c, m, ns, cert), p.Addr())
	termPort := portOf(t, term.Addr)
	port := testutil.FreePort(t)
	c.CreatePod(t, kubeenv.Pod{Namespace: ns, Name: svc, ServiceAccount: cfg.ServiceAccount, IP: nextPodIP(),
		Labels: map[string]string{"app": svc, tlsModeLabel: "istio"}, Ports: []int{termPort}})
	c.CreateService(t, kubeenv.Service{Namespace: ns, Name: svc, Selector: map[string]string{"app": svc},
		Ports: []kubeenv.Port{{Name: "tcp-dubbo", Port: port, TargetPort: termPort}}})
	c.CreateEndpointSlice(t, kubeenv.EndpointSlice{Namespace: ns, Name: svc, Service: svc, AddressType: "FQDN",
		Ports:     []kubeenv.Port{{Name: "tcp-dubbo", Port: termPort}},
		Endpoints: []kubeenv.Endpoint{{Address: "providers.localhost", Pod: svc}}})
	return &securedProvider{Provider: p, Terminator: term, Host: fmt.Sprintf("%s.%s.svc.cluster.local", svc, ns), Port: port}
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("port of %s: %v", addr, err)
	}
	return port
}

// waypointConfig says how a waypoint proxy runs.
type waypointConfig struct {
	// Namespace is the namespace the proxy states (--namespace).
	Namespace string
	// Credentials is the namespace of the rosetta-waypoint ServiceAccount
	// whose token it holds; Namespace when empty.
	Credentials string
	// ListenIP is the address its listeners bind; 127.0.0.1 when empty.
	ListenIP string
	// XDSMTLS authenticates it to the controller with its certificate
	// (--xds-mtls); the controller's must then be a mesh certificate, with
	// identity ControllerID when set.
	XDSMTLS      bool
	ControllerID string
	// CertTTL is the lifetime it asks istiod for (--cert-ttl); the
	// proxy's default when 0.
	CertTTL time.Duration
	// Args are more command-line arguments.
	Args []string
}

// waypoint is rosetta-proxy running as a namespace's waypoint, with an
// identity from istiod.
type waypoint struct {
	Admin, ListenIP string
	// ID is the identity its certificate carries.
	ID   string
	name string
}

// startWaypoint runs rosetta-proxy with --identity istiod (a token of
// ServiceAccount rosetta-waypoint for istiod's CA, the mesh root, istiod's
// secure gRPC address) and the waypoint's namespace and label, taking its
// config from the controller at xdsAddr.
func startWaypoint(t *testing.T, c *kubeenv.Cluster, m *istiod, xdsAddr string, cfg waypointConfig) *waypoint {
	t.Helper()
	creds := cfg.Credentials
	if creds == "" {
		creds = cfg.Namespace
	}
	w := &waypoint{ListenIP: cfg.ListenIP, ID: spiffeID(creds, waypointSA), name: creds + "-" + waypointSA}
	if cfg.Namespace != creds {
		w.name += "-as-" + cfg.Namespace
	}
	if w.ListenIP == "" {
		w.ListenIP = "127.0.0.1"
	}
	c.ServiceAccount(t, creds, waypointSA)
	_, proxyBin := rosettaBinaries(t, c)
	args := []string{"--listen-address=" + w.ListenIP, "--labels=" + waypointLabel + "=" + waypointSA,
		"--identity=istiod", "--ca-address=" + m.secureGRPCAddr, "--ca-root-cert=" + m.rootCertFile(t, c, creds),
		"--token-file=" + c.TokenFile(t, creds, waypointSA, time.Hour, istioCAAudience), "--cluster-id=" + clusterID}
	if cfg.XDSMTLS {
		args = append(args, "--xds-mtls")
	}
	if cfg.ControllerID != "" {
		args = append(args, "--xds-controller-id="+cfg.ControllerID)
	}
	if cfg.CertTTL != 0 {
		args = append(args, "--cert-ttl="+cfg.CertTTL.String())
	}
	w.Admin = c.StartProxy(t, proxyBin, xdsAddr, w.name, cfg.Namespace, append(args, cfg.Args...)...)
	return w
}

// addr is the address of the waypoint's listener on port.
func (w *waypoint) addr(port int) string { return fmt.Sprintf("%s:%d", w.ListenIP, port) }

// listenerName is the name the controller gives a service port's listener.
func listenerName(host string, port int) string { return fmt.Sprintf("%s_%d", host, port) }

// Transport protocols of Istio's inbound filter chains.
const (
	transportTLS = "tls"
	transportRaw = "raw_buffer"
)

// listenerDump is what a test reads of a listener in the proxy's
// /config_dump (protobuf JSON).
type listenerDump struct {
	Name         string `json:"name"`
	FilterChains []struct {
		FilterChainMatch struct {
			TransportProtocol string `json:"transportProtocol"`
		} `json:"filterChainMatch"`
		TransportSocket *struct {
			Name string `json:"name"`
		} `json:"transportSocket"`
		Filters []struct {
			Name        string `json:"name"`
			TypedConfig struct {
				Authorization []struct {
					Name   string `json:"name"`
					Action string `json:"action"`
				} `json:"authorization"`
			} `json:"typedConfig"`
		} `json:"filters"`
	} `json:"filterChains"`
}

// transports lists the transport_protocol each filter chain matches.
func (l listenerDump) transports() []string {
	var out []string
	for _, fc := range l.FilterChains {
		out = append(out, fc.FilterChainMatch.TransportProtocol)
	}
	return out
}

// policies lists the authorization policies of the first chain's
// MetaProtocol filter (every chain carries the same), as "ACTION name".
func (l listenerDump) policies() []string {
	var out []string
	if len(l.FilterChains) == 0 {
		return nil
	}
	for _, f := range l.FilterChains[0].Filters {
		for _, p := range f.TypedConfig.Authorization {
			action := p.Action
			if action == "" {
				action = "ALLOW" // the enum's zero value, left out of JSON
			}
			out = append(out, action+" "+p.Name)
		}
	}
	slices.Sort(out)
	return out
}

// configDump is the proxy's /config_dump, and its raw text for messages.
type configDump struct {
	Listeners []listenerDump `json:"listeners"`
	raw       string
}

func (d configDump) listener(name string) (listenerDump, bool) {
	for _, l := range d.Listeners {
		if l.Name == name {
			return l, true
		}
	}
	return listenerDump{}, false
}

func (d configDump) listenerNames() []string {
	var out []string
	for _, l := range d.Listeners {
		out = append(out, l.Name)
	}
	slices.Sort(out)
	return out
}

// configDump fetches the configuration in force in the proxy.
func (w *waypoint) configDump() (configDump, error) {
	resp, err := http.Get("http://" + w.Admin + "/config_dump")
	if err != nil {
		return configDump{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return configDump{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return configDump{}, fmt.Errorf("/config_dump: %d %s", resp.StatusCode, b)
	}
	d := configDump{raw: string(b)}
	if err := json.Unmarshal(b, &d); err != nil {
		return configDump{}, fmt.Errorf("/config_dump: %w", err)
	}
	return d, nil
}

// configWait is how long config takes to reach a proxy: the controller's
// debounce (at most 1 s) and a push, with room for a loaded machine.
const configWait = 20 * time.Second

// waitConfig polls the proxy's /config_dump until ok holds, and returns
// that dump; on timeout the test fails with the last dump.
func (w *waypoint) waitConfig(t *testing.T, what string, ok func(configDump) bool) configDump {
	t.Helper()
	var last configDump
	err := testutil.Poll(configWait, what+" in "+w.name+"'s config", func() (bool, error) {
		d, err := w.configDump()
		if err != nil {
			return false, err
		}
		last = d
		return ok(d), nil
	})
	if err != nil {
		t.Fatalf("%v; /config_dump:\n%s", err, testutil.Tail([]byte(last.raw), 4000))
	}
	return last
}

// waitChains waits until the listener's filter chains match exactly the
// given transports, in order: Istio's STRICT is [tls], PERMISSIVE [tls
// raw_buffer].
func (w *waypoint) waitChains(t *testing.T, listener string, transports ...string) listenerDump {
	t.Helper()
	d := w.waitConfig(t, fmt.Sprintf("listener %s with chains %v", listener, transports), func(d configDump) bool {
		l, ok := d.listener(listener)
		return ok && slices.Equal(l.transports(), transports)
	})
	l, _ := d.listener(listener)
	return l
}

// httpGet fetches url and fails the test unless it answers 200.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, b)
	}
	return string(b)
}

// metricValue is the value of series ("name{labels}") in a Prometheus
// text exposition; 0 when absent.
func metricValue(text, series string) float64 {
	v, _ := metric(text, series)
	return v
}

// metric is the value of series ("name{labels}") in a Prometheus text
// exposition, and whether the exposition has it.
func metric(text, series string) (float64, bool) {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return f, true
			}
		}
	}
	return 0, false
}

// setPeerAuthentication applies the namespace-wide PeerAuthentication of
// ns with the given mode.
func setPeerAuthentication(t *testing.T, c *kubeenv.Cluster, ns, mode string) {
	t.Helper()
	c.Apply(t, fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: %s}
spec: {mtls: {mode: %s}}
`, ns, mode))
}

// callTimeout bounds each dubbo-go call; a refused one fails well within.
const callTimeout = 5 * time.Second

// meshCaller is a dubbo-go consumer in a pod with a sidecar, running as
// ServiceAccount ns/sa: its calls to addr leave through a stand-in sidecar
// holding the account's istiod-issued certificate, which does Istio mTLS
// (ALPN istio) to the waypoint and checks that the waypoint presents
// serverID.
func meshCaller(t *testing.T, c *kubeenv.Cluster, m *istiod, ns, sa, addr, serverID string) *dubbokit.Consumer {
	t.Helper()
	consumer, _ := meshCallerSidecar(t, c, m, ns, sa, addr, serverID)
	return consumer
}

// meshCallerSidecar is meshCaller, also returning the caller's stand-in
// sidecar, whose peerLeaves are the certificates the waypoint presented.
func meshCallerSidecar(t *testing.T, c *kubeenv.Cluster, m *istiod, ns, sa, addr, serverID string) (*dubbokit.Consumer, *relay) {
	t.Helper()
	out := mtlsOriginator(t, istioWorkload(t, c, m, ns, sa), addr, serverID)
	return dubbokit.NewConsumer(t, out.Addr, dubbokit.ConsumerConfig{Version: dubboVersion, Timeout: callTimeout}), out
}

// plainCaller is a dubbo-go consumer without a sidecar calling addr in
// plaintext.
func plainCaller(t *testing.T, addr string) *dubbokit.Consumer {
	t.Helper()
	return dubbokit.NewConsumer(t, passThrough(t, addr).Addr, dubbokit.ConsumerConfig{Version: dubboVersion, Timeout: callTimeout})
}

// startController runs rosetta-controller as the chart's ServiceAccount,
// with args.
func startController(t *testing.T, c *kubeenv.Cluster, args ...string) *kubeenv.Controller {
	t.Helper()
	ctrlBin, _ := rosettaBinaries(t, c)
	return c.StartController(t, ctrlBin, "", "", args...)
}

// controllerIdentityArgs give the controller a mesh certificate of its
// ServiceAccount (rosetta-system/rosetta-controller) from istiod, for
// --xds-identity=istiod.
func controllerIdentityArgs(t *testing.T, c *kubeenv.Cluster, m *istiod) []string {
	t.Helper()
	const ns, sa = "rosetta-system", "rosetta-controller"
	return []string{"--xds-identity=istiod", "--ca-address=" + m.secureGRPCAddr,
		"--ca-root-cert=" + m.rootCertFile(t, c, ns), "--cluster-id=" + clusterID,
		"--token-file=" + c.TokenFile(t, ns, sa, time.Hour, istioCAAudience)}
}

// wantAnswer calls method(arg) and fails the test unless the answer is want.
func wantAnswer(t *testing.T, who string, consumer *dubbokit.Consumer, method, arg, want string) {
	t.Helper()
	got, err := consumer.Call(context.Background(), method, arg)
	if err != nil || got != want {
		t.Fatalf("%s: %s(%q) = %q, %v; want %q", who, method, arg, got, err, want)
	}
}

// wantRefused calls method(arg) and fails the test unless the call fails
// with an error that says wantErr (any error when empty).
func wantRefused(t *testing.T, who string, consumer *dubbokit.Consumer, method, arg, wantErr string) {
	t.Helper()
	got, err := consumer.Call(context.Background(), method, arg)
	if err == nil {
		t.Fatalf("%s: %s(%q) = %q; want it refused", who, method, arg, got)
	}
	if !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("%s: %s(%q) failed with %q; want an error saying %q", who, method, arg, err, wantErr)
	}
}
