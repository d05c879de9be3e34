package istio

import (
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// istioVersion is the istio.io/istio version hack/build-istiod.sh builds
// (Istio 1.31).
const istioVersion = "v0.0.0-20260827124520-eed52ebb66ad"

// clusterID is the cluster name istiod runs as and the CA expects in a
// request's ClusterID header.
const clusterID = "Kubernetes"

// istiodBinary finds pilot-discovery: in $ROSETTA_ISTIOD (the Makefile
// sets it), else where hack/build-istiod.sh builds by default.
func istiodBinary() (string, error) {
	dir := os.Getenv("ROSETTA_ISTIOD")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "rosetta", "istiod-"+istioVersion)
	}
	bin := filepath.Join(dir, "pilot-discovery")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("pilot-discovery missing in %s: run hack/build-istiod.sh", dir)
	}
	return bin, nil
}

// istioAPIVersion returns the istio.io/api version bin was built with,
// whose CRDs are the ones that istiod expects.
func istioAPIVersion(bin string) (string, error) {
	return moduleVersion(bin, "istio.io/api")
}

// moduleVersion returns the version of module mod that bin was built with.
func moduleVersion(bin, mod string) (string, error) {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", bin, err)
	}
	for _, d := range info.Deps {
		if d.Path == mod {
			if d.Replace != nil {
				d = d.Replace
			}
			return d.Version, nil
		}
	}
	return "", fmt.Errorf("%s was not built with %s", bin, mod)
}

// gatewayAPICRDs returns the folder of the standard Gateway API CRDs of
// the sigs.k8s.io/gateway-api version bin was built with (downloaded into
// the module cache if need be).
func gatewayAPICRDs(bin string) (string, error) {
	v, err := moduleVersion(bin, "sigs.k8s.io/gateway-api")
	if err != nil {
		return "", err
	}
	mod := "sigs.k8s.io/gateway-api@" + v
	js, err := exec.Command("go", "mod", "download", "-json", mod).Output()
	if err != nil {
		return "", fmt.Errorf("find %s: %w: %s", mod, err, js)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(js, &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("find %s: %v: %s", mod, err, js)
	}
	return filepath.Join(m.Dir, "config", "crd", "standard"), nil
}

// istiod is pilot-discovery on loopback: xDS, the CA and the debug
// endpoints, reading the cluster as admin. There are no webhooks (no
// webhook configurations point at it) and no Envoy.
type istiod struct {
	proc *testutil.Process
	// dir is its working directory (it writes ./var/run/secrets there).
	dir string
	// grpcAddr serves plaintext xDS (Istio's port 15010).
	grpcAddr string
	// secureGRPCAddr serves xDS and the CA (IstioCertificateService) over
	// TLS with istiod's certificate for istiod.istio-system.svc (15012).
	secureGRPCAddr string
	// monitoringAddr serves /metrics and /debug/... (15014).
	monitoringAddr string
	// httpAddr serves /ready (8080).
	httpAddr string
}

// meshConfig is what istiod needs of a MeshConfig here; the rest are
// Istio's defaults.
const meshConfig = `trustDomain: cluster.local
rootNamespace: istio-system
`

// startIstiod runs pilot-discovery against the cluster and waits until it
// is ready and its CA has written the root certificate into namespace
// probe. The namespaces istio-system and probe must exist, and Istio's
// CRDs be established.
func startIstiod(c *kubeenv.Cluster, bin, probe string) (*istiod, error) {
	m := &istiod{dir: filepath.Join(c.Dir, "istiod")}
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return nil, err
	}
	meshFile := filepath.Join(m.dir, "mesh.yaml")
	if err := os.WriteFile(meshFile, []byte(meshConfig), 0o644); err != nil {
		return nil, err
	}
	// The flags take addresses, not listeners: testutil.WithFreePorts
	// picks the ports, and picks again if another process took one first.
	if _, err := testutil.WithFreePorts(5, func(ports []int) (*istiod, error) { return m, m.start(c, bin, meshFile, ports) }); err != nil {
		return nil, err
	}
	return m, m.proc.Ready(30*time.Second, "istio-ca-root-cert in "+probe, func() (bool, error) {
		_, err := c.ConfigMapData(probe, "istio-ca-root-cert")
		return err == nil, err
	})
}

// start runs pilot-discovery on ports and waits until it is ready.
func (m *istiod) start(c *kubeenv.Cluster, bin, meshFile string, ports []int) error {
	addrs := make([]string, len(ports))
	for i, p := range ports {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	m.grpcAddr, m.secureGRPCAddr, m.monitoringAddr, m.httpAddr = addrs[0], addrs[1], addrs[2], addrs[3]
	httpsAddr := addrs[4] // webhooks (15017), unused here
	var err error
	m.proc, err = c.Start(testutil.Command{Name: "istiod", Path: bin, Dir: m.dir,
		Env: []string{"POD_NAMESPACE=istio-system", "CLUSTER_ID=" + clusterID, "PILOT_ENABLE_AMBIENT=true"},
		Args: []string{"discovery", "--kubeconfig=" + c.Kubeconfig, "--meshConfig=" + meshFile,
			"--grpcAddr=" + m.grpcAddr, "--secureGRPCAddr=" + m.secureGRPCAddr,
			"--monitoringAddr=" + m.monitoringAddr, "--httpAddr=" + m.httpAddr, "--httpsAddr=" + httpsAddr,
			"--ctrlz_port=0", "--log_output_level=default:info"}})
	if err != nil {
		return err
	}
	return m.proc.Ready(90*time.Second, "/ready", testutil.HTTPOK("http://"+m.httpAddr+"/ready"))
}

// rootCertFile writes the mesh's root certificate, from the
// istio-ca-root-cert ConfigMap istiod keeps in namespace ns, into a file
// as a workload would mount it, and returns its path. In a namespace just
// created, it waits for istiod to write the ConfigMap.
func (m *istiod) rootCertFile(t testing.TB, c *kubeenv.Cluster, ns string) string {
	t.Helper()
	var root string
	err := testutil.Poll(10*time.Second, "istio-ca-root-cert in "+ns, func() (bool, error) {
		data, err := c.ConfigMapData(ns, "istio-ca-root-cert")
		root = data["root-cert.pem"]
		if err == nil && root == "" {
			err = fmt.Errorf("no root-cert.pem in %v", data)
		}
		return root != "", err
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "root-cert.pem")
	if err := os.WriteFile(path, []byte(root), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// debug fetches one of istiod's /debug endpoints (for example
// "endpointShardz", "config_dump?proxyID=...", "authorizationz").
func (m *istiod) debug(t testing.TB, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + m.monitoringAddr + "/debug/" + path)
	if err != nil {
		t.Fatalf("istiod /debug/%s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("istiod /debug/%s: %d %v\n%s", path, resp.StatusCode, err, b)
	}
	return string(b)
}
