package redis

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

// need finds a binary from Debian's redis-server or redis-tools.
func need(t testing.TB, bin string) string {
	t.Helper()
	return testutil.NeedTool(t, bin, "apt-get install -y redis-server redis-tools")
}

// server is a redis-server the test started.
type server struct {
	Addr string
	Port int
	Dir  string
	p    *testutil.Process
}

// Stop kills the server before the test ends.
func (s *server) Stop() {
	s.p.Kill()
}

// serverWait bounds a redis-server's start.
const serverWait = 10 * time.Second

// startServer runs redis-server on a loopback port with no persistence,
// waits until it answers PING and stops it when the test ends.
// redis-server must be told its port, so testutil.OnFreePorts picks it and
// tries again when another process took it first. The cluster bus gets a
// port of its own too (--cluster-port, used only with --cluster-enabled)
// rather than port+10000, which may be taken or past 65535.
func startServer(t testing.TB, extra ...string) *server {
	t.Helper()
	bin := need(t, "redis-server")
	return testutil.OnFreePorts(t, 2, func(ports []int) (*server, error) {
		dir := t.TempDir()
		s := &server{Addr: net.JoinHostPort("127.0.0.1", itoa(ports[0])), Port: ports[0], Dir: dir}
		s.p = testutil.StartT(t, testutil.Command{Name: "redis-server " + s.Addr, Path: bin, Log: dir + "/log",
			Args: append([]string{"--port", itoa(ports[0]), "--cluster-port", itoa(ports[1]), "--bind", "127.0.0.1",
				"--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "no"}, extra...)})
		return s, s.p.Ready(serverWait, "to answer PING", testutil.RedisAnswers(s.Addr))
	})
}

// rawCommand sends one command and returns the first line of the answer.
func rawCommand(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(appendCommand(nil, strArgs(args...)...)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// cli runs redis-cli against addr with the commands piped in, one a line,
// and returns its output.
func cli(t testing.TB, addr string, input string, extra ...string) string {
	t.Helper()
	bin := need(t, "redis-cli")
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, append([]string{"-h", host, "-p", port}, extra...)...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v: %s", extra, err, out)
	}
	return string(out)
}

// startCluster builds a three-primary Redis Cluster with redis-cli --cluster
// create and waits until every node reports the cluster ok.
func startCluster(t testing.TB) []*server {
	t.Helper()
	return startClusterWith(t, 3, 0)
}

// startClusterWith builds a cluster of primaries, each with replicas
// replicas (redis-cli --cluster-replicas), and waits until every node
// reports the cluster ok.
func startClusterWith(t testing.TB, primaries, replicas int) []*server {
	t.Helper()
	var nodes []*server
	var addrs []string
	for i := 0; i < primaries*(1+replicas); i++ {
		s := startServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
		nodes = append(nodes, s)
		addrs = append(addrs, s.Addr)
	}
	bin := need(t, "redis-cli")
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-yes")
	if replicas > 0 {
		args = append(args, "--cluster-replicas", strconv.Itoa(replicas))
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v: %s", err, out)
	}
	for _, n := range nodes {
		testutil.MustPoll(t, 20*time.Second, "cluster node "+n.Addr+" ok", func() (bool, error) {
			info := cli(t, n.Addr, "CLUSTER INFO\n")
			return strings.Contains(info, "cluster_state:ok"), fmt.Errorf("CLUSTER INFO: %s", info)
		})
	}
	return nodes
}

// obj is a JSON object; proxy configs are built as data and given to
// proxytest as JSON, which its YAML reader accepts.
type obj = map[string]any

func clusterConfig(name string, addrs ...string) obj {
	var eps []obj
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		eps = append(eps, obj{"endpoint": obj{"address": obj{"socket_address": obj{"address": host, "port_value": p}}}})
	}
	return obj{"name": name, "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN",
		"load_assignment": obj{"cluster_name": name, "endpoints": []obj{{"lb_endpoints": eps}}}}
}

// prefixRoute sends keys with prefix to cluster ("" prefix: every request).
func prefixRoute(name, prefix, cluster string, extra obj) obj {
	action := obj{"cluster": cluster, "timeout": "5s"}
	for k, v := range extra {
		action[k] = v
	}
	r := obj{"name": name, "route": action}
	if prefix != "" {
		r["match"] = obj{"attributes": []obj{{"name": "key", "prefix": prefix}}}
	}
	return r
}

// startProxy runs a proxy with one redis listener.
func startProxy(t testing.TB, opts map[string]string, routes []obj, clusters ...obj) string {
	t.Helper()
	return startProxyWith(t, opts, routes, clusters...).Addr(t, "redis")
}

// startProxyWith is startProxy returning the proxy, for its admin endpoints.
func startProxyWith(t testing.TB, opts map[string]string, routes []obj, clusters ...obj) *proxytest.Proxy {
	t.Helper()
	return proxytest.Start(t, listenerConfig(t, opts, routes, clusters...))
}

// listenerConfig is the static config of a proxy with one Redis listener.
func listenerConfig(t testing.TB, opts map[string]string, routes []obj, clusters ...obj) string {
	t.Helper()
	filter := obj{
		"@type":         "type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy",
		"codec":         "redis",
		"route_config":  obj{"name": "r", "routes": routes},
		"codec_options": opts,
	}
	cfg := obj{
		"listeners": []obj{{"name": "redis",
			"address":       obj{"socket_address": obj{"address": "127.0.0.1", "port_value": 0}},
			"filter_chains": []obj{{"filters": []obj{{"name": "rosetta.metaprotocol", "typed_config": filter}}}}}},
		"clusters": clusters,
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func must(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}
