package kubeenv

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// What a controller-manager and a kubelet would create or report, written
// by the test instead.

// ServiceAccount creates a ServiceAccount (no controller-manager creates
// any, not even default).
func (c *Cluster) ServiceAccount(t testing.TB, ns, name string) {
	t.Helper()
	c.applyObject(t, map[string]any{
		"apiVersion": "v1", "kind": "ServiceAccount",
		"metadata": map[string]any{"name": name, "namespace": ns},
	})
}

// Token returns a TokenRequest token for a ServiceAccount, valid for d,
// with the given audiences (none: the API server's own, its issuer).
func (c *Cluster) Token(t testing.TB, ns, sa string, d time.Duration, audiences ...string) string {
	t.Helper()
	args := []string{"create", "token", sa, "-n", ns, "--duration=" + d.String()}
	for _, a := range audiences {
		args = append(args, "--audience="+a)
	}
	return strings.TrimSpace(c.MustKubectl(t, "", args...))
}

// TokenFile writes Token's token into a file in the test's temporary
// folder and returns its path, as a projected token volume would.
func (c *Cluster) TokenFile(t testing.TB, ns, sa string, d time.Duration, audiences ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(c.Token(t, ns, sa, d, audiences...)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Pod is a Pod the test runs itself: created, then reported Running and
// Ready with IP by a status update, as a kubelet would (istiod indexes only
// Ready pods).
type Pod struct {
	Namespace, Name, ServiceAccount string
	// IP is its pod IP. The API server refuses loopback addresses in
	// EndpointSlices; a documentation address (192.0.2.0/24) fits when
	// nothing dials it.
	IP          string
	Labels      map[string]string
	Annotations map[string]string
	// Ports are its container ports.
	Ports []int
}

// CreatePod creates the Pod and marks it Running and Ready.
func (c *Cluster) CreatePod(t testing.TB, p Pod) {
	t.Helper()
	var ports []map[string]any
	for _, n := range p.Ports {
		ports = append(ports, map[string]any{"containerPort": n})
	}
	c.applyObject(t, map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": p.Name, "namespace": p.Namespace, "labels": p.Labels, "annotations": p.Annotations},
		"spec": map[string]any{
			"serviceAccountName": p.ServiceAccount,
			"containers":         []map[string]any{{"name": "app", "image": "rosetta.invalid/app", "ports": ports}},
		},
	})
	now := time.Now().UTC().Format(time.RFC3339)
	cond := func(typ string) map[string]any {
		return map[string]any{"type": typ, "status": "True", "lastTransitionTime": now}
	}
	status, err := json.Marshal(map[string]any{"status": map[string]any{
		"phase": "Running", "podIP": p.IP, "podIPs": []map[string]any{{"ip": p.IP}}, "startTime": now,
		"conditions": []map[string]any{cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c.MustKubectl(t, "", "patch", "pod", p.Name, "-n", p.Namespace, "--subresource=status", "--type=merge", "-p", string(status))
}

// Port is a Service or EndpointSlice port.
type Port struct {
	Name string
	Port int
	// TargetPort is a Service port's target (default Port).
	TargetPort  int
	AppProtocol string
}

// Service is a ClusterIP Service.
type Service struct {
	Namespace, Name string
	Selector        map[string]string
	Labels          map[string]string
	Ports           []Port
}

// CreateService creates or updates the Service.
func (c *Cluster) CreateService(t testing.TB, s Service) {
	t.Helper()
	var ports []map[string]any
	for _, p := range s.Ports {
		target := p.TargetPort
		if target == 0 {
			target = p.Port
		}
		port := map[string]any{"name": p.Name, "port": p.Port, "targetPort": target}
		if p.AppProtocol != "" {
			port["appProtocol"] = p.AppProtocol
		}
		ports = append(ports, port)
	}
	c.applyObject(t, map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": s.Name, "namespace": s.Namespace, "labels": s.Labels},
		"spec":     map[string]any{"selector": s.Selector, "ports": ports},
	})
}

// Endpoint is one address of an EndpointSlice.
type Endpoint struct {
	Address string
	// Pod, when set, is the Pod (in the slice's namespace) behind the
	// address, as the EndpointSlice controller would name it.
	Pod string
}

// EndpointSlice is a slice written by the test (no controller-manager
// writes any), managed by "e2e".
type EndpointSlice struct {
	Namespace, Name string
	// Service is the Service the slice belongs to.
	Service string
	// AddressType is IPv4 (the default) or FQDN. The API server refuses
	// loopback IPv4 addresses; an FQDN slice of "providers.localhost"
	// (loopback by RFC 6761) reaches a server on this machine.
	AddressType string
	Labels      map[string]string
	Ports       []Port
	Endpoints   []Endpoint
}

// CreateEndpointSlice creates or updates the slice.
func (c *Cluster) CreateEndpointSlice(t testing.TB, s EndpointSlice) {
	t.Helper()
	labels := map[string]any{"kubernetes.io/service-name": s.Service, "endpointslice.kubernetes.io/managed-by": "e2e"}
	for k, v := range s.Labels {
		labels[k] = v
	}
	addrType := s.AddressType
	if addrType == "" {
		addrType = "IPv4"
	}
	var ports, eps []map[string]any
	for _, p := range s.Ports {
		port := map[string]any{"name": p.Name, "port": p.Port}
		if p.AppProtocol != "" {
			port["appProtocol"] = p.AppProtocol
		}
		ports = append(ports, port)
	}
	for _, e := range s.Endpoints {
		ep := map[string]any{"addresses": []string{e.Address}, "conditions": map[string]any{"ready": true}}
		if e.Pod != "" {
			ep["targetRef"] = map[string]any{"kind": "Pod", "name": e.Pod, "namespace": s.Namespace}
		}
		eps = append(eps, ep)
	}
	c.applyObject(t, map[string]any{
		"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
		"metadata":    map[string]any{"name": s.Name, "namespace": s.Namespace, "labels": labels},
		"addressType": addrType, "ports": ports, "endpoints": eps,
	})
}

// ConfigMapData returns a ConfigMap's data, or an error when it is not
// there (yet).
func (c *Cluster) ConfigMapData(ns, name string) (map[string]string, error) {
	out, err := c.Kubectl("", "get", "configmap", name, "-n", ns, "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("configmap %s/%s: %w: %s", ns, name, err, strings.TrimSpace(out))
	}
	var cm struct{ Data map[string]string }
	if err := json.Unmarshal([]byte(out), &cm); err != nil {
		return nil, fmt.Errorf("configmap %s/%s: %w", ns, name, err)
	}
	return cm.Data, nil
}

func (c *Cluster) applyObject(t testing.TB, obj map[string]any) {
	t.Helper()
	b, err := json.Marshal(prune(obj))
	if err != nil {
		t.Fatal(err)
	}
	c.Apply(t, string(b))
}

// prune drops nil maps and slices from obj and the maps within it, so
// that fields left unset are absent, not null.
func prune(obj map[string]any) map[string]any {
	for k, v := range obj {
		switch x := v.(type) {
		case map[string]any:
			obj[k] = prune(x)
		case []map[string]any:
			for _, m := range x {
				prune(m)
			}
		}
		if rv := reflect.ValueOf(v); v == nil || (rv.Kind() == reflect.Map || rv.Kind() == reflect.Slice) && rv.IsNil() {
			delete(obj, k)
		}
	}
	return obj
}
