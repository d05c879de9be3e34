// Package kubeenv runs a real Kubernetes API server for the e2e modules:
// etcd and kube-apiserver on loopback (built by hack/build-k8s-tools.sh),
// an admin token in a token file, RBAC, service-account token signing (so
// TokenRequest and TokenReview work), and no controller-manager, scheduler
// or kubelet. It also starts the processes tests run next to it (istiod,
// rosetta-controller, rosetta-proxy) and creates what a controller-manager
// or kubelet would have: ServiceAccounts, Pods made Ready by a status
// update, EndpointSlices.
//
// A test binary shares one cluster (it takes seconds to start):
//
//	var env kubeenv.Env
//
//	func TestMain(m *testing.M) {
//		os.Exit(env.Main(m, kubeenv.Options{RepoRoot: "../..", Setup: setup}))
//	}
//
//	func TestX(t *testing.T) { c := env.Need(t); ... }
package kubeenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// ToolsSubdir is the folder hack/build-k8s-tools.sh builds into, named
// after the versions it builds.
const ToolsSubdir = "k8s-tools-v1.36.3-etcd-v3.6.16"

// Cluster is etcd and kube-apiserver on loopback with an admin token, and
// the processes started next to them.
type Cluster struct {
	// Dir holds the cluster's files and every process's log.
	Dir   string
	Tools string
	// URL is the API server's https address.
	URL        string
	AdminToken string
	// Kubeconfig is an admin (system:masters) kubeconfig.
	Kubeconfig string
	procs      []*testutil.Process
}

// ToolsDir finds kube-apiserver, etcd and kubectl: in $ROSETTA_K8S_TOOLS
// (the Makefile sets it), else in ~/.cache/rosetta/ToolsSubdir, else in
// repoRoot/.cache/ToolsSubdir (where hack/build-k8s-tools.sh builds when
// run by hand).
func ToolsDir(repoRoot string) (string, error) {
	dirs := []string{os.Getenv("ROSETTA_K8S_TOOLS")}
	if dirs[0] == "" {
		home, _ := os.UserHomeDir()
		dirs = []string{filepath.Join(home, ".cache", "rosetta", ToolsSubdir), filepath.Join(repoRoot, ".cache", ToolsSubdir)}
	}
	var missing error
	for _, dir := range dirs {
		missing = nil
		for _, b := range []string{"kube-apiserver", "etcd", "kubectl"} {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				missing = fmt.Errorf("%s missing in %s: run hack/build-k8s-tools.sh", b, dir)
				break
			}
		}
		if missing == nil {
			return filepath.Abs(dir)
		}
	}
	return "", missing
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// StartCluster starts etcd and the API server with their files in dir and
// waits until the API server is ready. Both are told their ports on the
// command line, so they start through testutil.WithFreePorts, which picks
// new ports when another process took one first.
func StartCluster(tools, dir string) (*Cluster, error) {
	c := &Cluster{Dir: dir, Tools: tools, AdminToken: randomHex(16)}
	etcdClient, err := testutil.WithFreePorts(2, c.startEtcd)
	if err != nil {
		c.Stop()
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		c.Stop()
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		c.Stop()
		return nil, err
	}
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": []byte(c.AdminToken + ",admin,admin-uid,system:masters\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if _, err := testutil.WithFreePorts(1, func(ports []int) (*testutil.Process, error) {
		return c.startAPIServer(etcdClient, ports[0])
	}); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// etcdWait bounds etcd's start.
const etcdWait = 30 * time.Second

// startEtcd starts etcd on the client and peer ports given and waits until
// it is healthy; it returns the client URL.
func (c *Cluster) startEtcd(ports []int) (string, error) {
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	p, err := c.Start(testutil.Command{Name: "etcd", Path: filepath.Join(c.Tools, "etcd"), Args: []string{
		"--name=default", "--data-dir=" + filepath.Join(c.Dir, fmt.Sprintf("etcd-%d", ports[0])),
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=default=" + peer, "--log-level=warn"}})
	if err != nil {
		return "", err
	}
	return client, p.Ready(etcdWait, "/health", testutil.HTTPOK(client+"/health"))
}

// startAPIServer starts kube-apiserver on port, with its keys and token
// file already in the cluster's folder, and waits until it is ready.
func (c *Cluster) startAPIServer(etcdClient string, port int) (*testutil.Process, error) {
	dir := c.Dir
	c.URL = fmt.Sprintf("https://127.0.0.1:%d", port)
	p, err := c.Start(testutil.Command{Name: "kube-apiserver", Path: filepath.Join(c.Tools, "kube-apiserver"), Args: []string{
		"--etcd-servers=" + etcdClient,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		// TokenRequest signs with the key, TokenReview verifies with the
		// public half; a TokenReview naming audiences (istiod's names
		// istio-ca) checks the token's against those.
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		// No controller-manager creates default ServiceAccounts.
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
		"--v=0"}})
	if err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := WriteKubeconfig(c.Kubeconfig, c.URL, c.AdminToken); err != nil {
		return p, err
	}
	return p, c.waitReady(p, 90*time.Second)
}

// Start starts a process that lives as long as the cluster, with its log
// (Command.Log, default Dir/<name>.log) in the cluster's folder; Stop ends
// it, before the API server.
func (c *Cluster) Start(cmd testutil.Command) (*testutil.Process, error) {
	if cmd.Log == "" {
		cmd.Log = filepath.Join(c.Dir, cmd.Name+".log")
	}
	p, err := testutil.Start(cmd)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// waitReady waits until the API server (p) answers /readyz.
func (c *Cluster) waitReady(p *testutil.Process, within time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return p.Ready(within, "/readyz", func() (bool, error) {
		req, _ := http.NewRequest("GET", c.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.AdminToken)
		resp, err := hc.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("status %d", resp.StatusCode)
	})
}

// Stop kills every process the cluster started, the last started first.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].Kill()
	}
}

// LogTails returns the last n bytes of each process's log.
func (c *Cluster) LogTails(n int) string {
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintf(&b, "--- %s log (%s):\n%s\n", p.Name, p.Log, p.LogTail(n))
	}
	return b.String()
}

// WriteKubeconfig writes a kubeconfig for server that authenticates with
// a bearer token.
func WriteKubeconfig(path, server, token string) error {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: e2e
  user: {token: %q}
contexts:
- name: e2e
  context: {cluster: e2e, user: e2e}
current-context: e2e
`, server, token)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// Kubectl runs the matching kubectl against the cluster as admin; stdin,
// when not empty, is its input.
func (c *Cluster) Kubectl(stdin string, args ...string) (string, error) {
	return c.KubectlAs(c.Kubeconfig, stdin, args...)
}

// KubectlAs is Kubectl with another kubeconfig.
func (c *Cluster) KubectlAs(kubeconfig, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.Tools, "kubectl"), append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// MustKubectl is Kubectl, failing the test on error.
func (c *Cluster) MustKubectl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, err := c.Kubectl(stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Apply applies YAML or JSON documents, failing the test on error.
func (c *Cluster) Apply(t testing.TB, docs string) {
	t.Helper()
	c.MustKubectl(t, docs, "apply", "-f", "-")
}

// ApplyServerSide applies files or folders with server-side apply (what
// CRDs too large for the last-applied annotation need), then waits until
// every CRD is established.
func (c *Cluster) ApplyServerSide(paths ...string) error {
	for _, p := range paths {
		if out, err := c.Kubectl("", "apply", "--server-side", "-f", p); err != nil {
			return fmt.Errorf("kubectl apply --server-side -f %s: %w\n%s", p, err, out)
		}
	}
	if out, err := c.Kubectl("", "wait", "--for", "condition=established", "--timeout=60s", "crd", "--all"); err != nil {
		return fmt.Errorf("kubectl wait for CRDs: %w\n%s", err, out)
	}
	return nil
}

// EnsureNamespace creates namespace ns unless it exists. There is no
// controller-manager, so namespaces are never deleted.
func (c *Cluster) EnsureNamespace(ns string) error {
	yaml, err := c.Kubectl("", "create", "namespace", ns, "--dry-run=client", "-o", "yaml")
	if err != nil {
		return fmt.Errorf("namespace %s: %w\n%s", ns, err, yaml)
	}
	if out, err := c.Kubectl(yaml, "apply", "-f", "-"); err != nil {
		return fmt.Errorf("namespace %s: %w\n%s", ns, err, out)
	}
	return nil
}

// MustNamespace is EnsureNamespace, failing the test on error.
func (c *Cluster) MustNamespace(t testing.TB, ns string) {
	t.Helper()
	if err := c.EnsureNamespace(ns); err != nil {
		t.Fatal(err)
	}
}
