package xds_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// writeBenchFolder writes the benchmark mesh as folder-mode YAML: one file
// per service (Service and EndpointSlice), one per MetaRouter, and a
// Sidecar per namespace.
func writeBenchFolder(b *testing.B, dir string) {
	b.Helper()
	for i := 0; i < benchServices; i++ {
		ns := fmt.Sprintf("ns-%d", i%benchNamespaces)
		svc := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: svc-%[1]d, namespace: %[2]s}
spec:
  ports: [{name: tcp-dubbo, port: %[3]d}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-%[1]d
  namespace: %[2]s
  labels: {kubernetes.io/service-name: svc-%[1]d}
addressType: IPv4
ports: [{name: tcp-dubbo, port: %[3]d}]
endpoints:
- addresses: [10.%[4]d.%[5]d.1]
- addresses: [10.%[4]d.%[5]d.2]
- addresses: [10.%[4]d.%[5]d.3]
`, i, ns, 20000+i, i/250, i%250)
		writeFileB(b, filepath.Join(dir, fmt.Sprintf("svc-%d.yaml", i)), svc)
		writeFileB(b, filepath.Join(dir, fmt.Sprintf("mr-%d.yaml", i)), benchRouterYAML(i, 0))
	}
	for n := 0; n < benchNamespaces; n++ {
		writeFileB(b, filepath.Join(dir, fmt.Sprintf("sidecar-%d.yaml", n)), fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: ns-%d}
spec:
  egress: [{hosts: ["./*"]}]
`, n))
	}
}

func benchRouterYAML(i, gen int) string {
	ns := fmt.Sprintf("ns-%d", i%benchNamespaces)
	return fmt.Sprintf(`apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: svc-%[1]d, namespace: %[2]s}
spec:
  hosts: [svc-%[1]d.%[2]s.svc.cluster.local]
  routes:
  - name: r
    match: {attributes: {method: {exact: m%[3]d}}}
    route: [{destination: {host: svc-%[1]d.%[2]s.svc.cluster.local}}]
`, i, ns, gen)
}

func writeFileB(b *testing.B, path, data string) {
	b.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
}

// procStats reads a process's resident memory (now and peak, MB) and CPU time.
func procStats(pid int) (rss, peak float64, cpu time.Duration) {
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			kb, _ := strconv.ParseFloat(f[1], 64)
			switch f[0] {
			case "VmRSS:":
				rss = kb / 1024
			case "VmHWM:":
				peak = kb / 1024
			}
		}
	}
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name; utime and stime are 14th and 15th.
		rest := string(data)[strings.LastIndexByte(string(data), ')')+2:]
		f := strings.Fields(rest)
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		cpu = time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
	}
	return rss, peak, cpu
}

// BenchmarkControllerProcess is the control-plane benchmark with
// the controller as its own process (folder mode, debounce 10 ms), so its
// memory and CPU are measured alone: 1,000 services with 3 endpoints,
// 1,000 MetaRouters, 100 proxies (10 namespaces, Sidecar-scoped) as
// in-process ADS clients. Each iteration rewrites one MetaRouter file and
// waits until the 10 proxies that see it have applied it.
//
//	go test ./pkg/xds -run '^$' -bench ControllerProcess -benchtime 200x
func BenchmarkControllerProcess(b *testing.B) {
	dir := b.TempDir()
	cfgDir := filepath.Join(dir, "config")
	if err := os.Mkdir(cfgDir, 0o755); err != nil {
		b.Fatal(err)
	}
	writeBenchFolder(b, cfgDir)
	bin := testutil.GoBuild(b, filepath.Join("..", ".."), "./cmd/rosetta-controller")
	// The controller listens on port 0 and logs the ports it got (at info).
	ctrl := testutil.StartT(b, testutil.Command{Name: "rosetta-controller", Path: bin, Args: []string{"--config-dir", cfgDir,
		"--xds-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--debug-address=",
		"--debounce", "10ms", "--debounce-max", "100ms", "--log-level", "info"}})
	xdsAddr, err := ctrl.LoggedAddr(60*time.Second, "serving", "xds")
	if err != nil {
		b.Fatal(err)
	}
	httpAddr, err := ctrl.LoggedAddr(time.Second, "serving", "http")
	if err != nil {
		b.Fatal(err)
	}
	if err := ctrl.Ready(60*time.Second, "ready", testutil.HTTPOK("http://"+httpAddr+"/readyz")); err != nil {
		b.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	proxies := startBenchProxies(ctx, xdsAddr, quiet)
	waitAll := func(listener, method string, ns int) {
		for p, ps := range proxies {
			if p%benchNamespaces != ns {
				continue
			}
			for {
				ps.mu.Lock()
				got := ps.seen[listener]
				ps.mu.Unlock()
				if got == method {
					break
				}
				select {
				case <-ps.notify:
				case <-time.After(30 * time.Second):
					b.Fatalf("proxy-%d did not get %s=%s", p, listener, method)
				}
			}
		}
	}
	for ns := 0; ns < benchNamespaces; ns++ {
		last := benchServices - benchNamespaces + ns
		waitAll(fmt.Sprintf("svc-%d.ns-%d.svc.cluster.local_%d", last, ns, 20000+last), "m0", ns)
	}
	var sizes []int
	for _, ps := range proxies {
		ps.mu.Lock()
		sizes = append(sizes, ps.bytes)
		ps.mu.Unlock()
	}
	_, _, cpu0 := procStats(ctrl.Pid())
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		svc := (i * 7) % benchServices
		ns := svc % benchNamespaces
		written := time.Now()
		writeFileB(b, filepath.Join(cfgDir, fmt.Sprintf("mr-%d.yaml", svc)), benchRouterYAML(svc, i+1))
		waitAll(fmt.Sprintf("svc-%d.ns-%d.svc.cluster.local_%d", svc, ns, 20000+svc), "m"+strconv.Itoa(i+1), ns)
		lat = append(lat, time.Since(written))
	}
	b.StopTimer()
	rss, peak, cpu1 := procStats(ctrl.Pid())
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	sort.Ints(sizes)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.Logf("slowest: %v", lat[max(0, len(lat)-5):])
	b.ReportMetric(rss, "ctrl-rss-MB")
	b.ReportMetric(peak, "ctrl-peak-rss-MB")
	b.ReportMetric(float64((cpu1-cpu0).Milliseconds())/float64(b.N), "ctrl-cpu-ms/write")
	b.ReportMetric(float64(sizes[len(sizes)/2]), "bytes/proxy")
	b.ReportMetric(0, "ns/op")
}
