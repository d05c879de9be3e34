package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// mesh is the shape of a generated mesh: Services of one Dubbo port each,
// spread round-robin over namespaces, each with 3 endpoints in two
// EndpointSlices (labelled version v1 and v2) that a DestinationRule
// makes two subsets of, and a MetaRouter that sends one method to v1 and
// everything else to v2; a Sidecar per namespace scopes its proxies to
// that namespace.
type mesh struct {
	services, namespaces int
}

// firstPort is the port of service 0; service i listens on firstPort+i,
// so no two services of a namespace share a port.
const firstPort = 20000

// initialMethod is what every MetaRouter's first route matches before any
// edit.
const initialMethod = "init"

func (m mesh) check() error {
	if m.services < 1 || m.namespaces < 1 || m.namespaces > m.services {
		return fmt.Errorf("want at least one service and 1 to %d namespaces, got %d", m.services, m.namespaces)
	}
	if firstPort+m.services > 65535 {
		return fmt.Errorf("at most %d services (one port each)", 65535-firstPort)
	}
	return nil
}

func (m mesh) namespace(svc int) string { return fmt.Sprintf("ns-%d", svc%m.namespaces) }

func (m mesh) host(svc int) string {
	return fmt.Sprintf("svc-%d.%s.svc.cluster.local", svc, m.namespace(svc))
}

// routeName names the route configuration a proxy gets for a service
// (controller.ListenerName).
func (m mesh) routeName(svc int) string { return fmt.Sprintf("%s_%d", m.host(svc), firstPort+svc) }

// servicesIn counts the services of namespace ns.
func (m mesh) servicesIn(ns int) int {
	n := m.services / m.namespaces
	if ns < m.services%m.namespaces {
		n++
	}
	return n
}

// write writes the mesh as folder-mode YAML: per service a file with the
// Service, its EndpointSlices and DestinationRule and a file with its
// MetaRouter (the one edits rewrite), and a Sidecar per namespace.
func (m mesh) write(dir string) error {
	for i := 0; i < m.services; i++ {
		if err := writeAtomic(filepath.Join(dir, fmt.Sprintf("svc-%d.yaml", i)), m.serviceYAML(i)); err != nil {
			return err
		}
		if err := writeAtomic(m.routerFile(dir, i), m.routerYAML(i, initialMethod)); err != nil {
			return err
		}
	}
	for n := 0; n < m.namespaces; n++ {
		sc := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: ns-%d}
spec:
  egress: [{hosts: ["./*"]}]
`, n)
		if err := writeAtomic(filepath.Join(dir, fmt.Sprintf("sidecar-ns-%d.yaml", n)), sc); err != nil {
			return err
		}
	}
	return nil
}

func (m mesh) serviceYAML(i int) string {
	var b strings.Builder
	ns, name := m.namespace(i), fmt.Sprintf("svc-%d", i)
	// 10.<i/256>.<i%256>.1-3: unique for up to 65536 services.
	ip := func(e int) string { return fmt.Sprintf("10.%d.%d.%d", i/256, i%256, e) }
	fmt.Fprintf(&b, `apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  ports: [{name: tcp-dubbo, port: %[3]d, targetPort: 20880}]
`, name, ns, firstPort+i)
	for _, s := range []struct {
		version string
		ips     []string
	}{{"v1", []string{ip(1), ip(2)}}, {"v2", []string{ip(3)}}} {
		fmt.Fprintf(&b, `---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s-%[3]s
  namespace: %[2]s
  labels: {kubernetes.io/service-name: %[1]s, version: %[3]s}
addressType: IPv4
ports: [{name: tcp-dubbo, port: 20880}]
endpoints:
`, name, ns, s.version)
		for _, a := range s.ips {
			fmt.Fprintf(&b, "- addresses: [%s]\n", a)
		}
	}
	fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  host: %[3]s
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`, name, ns, m.host(i))
	return b.String()
}

func (m mesh) routerFile(dir string, svc int) string {
	return filepath.Join(dir, fmt.Sprintf("mr-%d.yaml", svc))
}

// routerYAML is service svc's MetaRouter: calls of method go to subset
// v1, every other call to v2.
func (m mesh) routerYAML(svc int, method string) string {
	return fmt.Sprintf(`apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: svc-%[1]d, namespace: %[2]s}
spec:
  hosts: [%[3]s]
  routes:
  - name: one-method
    match: {attributes: {method: {exact: %[4]s}}}
    route: [{destination: {host: %[3]s, subset: v1}}]
  - name: everything-else
    route: [{destination: {host: %[3]s, subset: v2}}]
`, svc, m.namespace(svc), m.host(svc), method)
}

// writeAtomic writes a file as editors save one: to a hidden temporary
// name in the same folder, then renamed over the old file, so the
// controller never reads it half-written.
func writeAtomic(path, data string) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeTemp writes data to the temporary file writeAtomic renames, and
// returns its name.
func writeTemp(path, data string) (string, error) {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		return "", fmt.Errorf("scale: %w", err)
	}
	return tmp, nil
}
