package dubbo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// A real Prometheus (hack/build-prometheus.sh) scrapes a rosetta-proxy
// under real dubbo-go traffic, and a rosetta-controller in folder mode;
// the PromQL of Istio's dashboards and of the dashboards in
// manifests/dashboards answers with the numbers the test sent.

// greeterCluster is the cluster name the controller gives the service's
// port: the proxy takes destination_service from it.
const greeterCluster = "outbound|20880||greeter.shop.svc.cluster.local"

// The calls the test makes, and what each is labelled.
const (
	okCalls      = 20 // sayHello: status 20
	failCalls    = 5  // fail: the provider throws, status 20 with an exception body
	noRouteCalls = 3  // echo: no route, the proxy's local reply (60, NR)
	totalCalls   = okCalls + failCalls + noRouteCalls
)

func TestIstioMetricsInPrometheus(t *testing.T) {
	promBin := prometheusBinary(t)
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	greeter := cluster(t, greeterCluster, p.Addr())
	lbs := greeter["load_assignment"].(obj)["endpoints"].([]obj)[0]["lb_endpoints"].([]obj)
	lbs[0]["metadata"] = obj{"filter_metadata": obj{"istio": obj{
		"workload":  "greeter-v1;shop;greeter;v1;Kubernetes",
		"principal": "spiffe://cluster.local/ns/shop/sa/greeter",
	}}}
	px := startProxyProcess(t, proxyConfig(t, []obj{
		route("hello", map[string]string{"method": dubbokit.MethodSayHello}, greeterCluster, routeTimeout),
		route("fail", map[string]string{"method": dubbokit.MethodFail}, greeterCluster, routeTimeout),
	}, greeter))
	ctrl := startFolderController(t)
	prom := startPrometheus(t, promBin, map[string]string{"rosetta-proxy": px.admin, "rosetta-controller": ctrl})

	c := dubbokit.NewConsumer(t, px.addr, consumerConfig())
	// One call of each kind first, so each series is scraped before most
	// of its calls: a rate needs a series to grow between two scrapes.
	calls(t, c, 0, 1)
	waitForCalls(t, prom, 3)
	calls(t, c, 1, okCalls)
	waitForCalls(t, prom, totalCalls)
	time.Sleep(2 * time.Second) // a few more scrapes, for the rates' windows

	// Request counts by destination_service and response_code, as the
	// Istio Service dashboard's "requests by response code".
	byCode, err := prom.vector(`sum by (destination_service, response_code, response_flags) (istio_requests_total{reporter="waypoint"})`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"greeter.shop.svc.cluster.local 20 -":        okCalls,
		"greeter.shop.svc.cluster.local EXCEPTION -": failCalls,
		"unknown 60 NR": noRouteCalls,
	}
	got := map[string]float64{}
	for _, s := range byCode {
		got[s.Metric["destination_service"]+" "+s.Metric["response_code"]+" "+s.Metric["response_flags"]] = s.value(t)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests by destination_service, response_code, response_flags = %v, want %v", got, want)
	}

	// The dashboards' own forms: rates over a window, p99 from the
	// histogram, and the success rate.
	queries := map[string]func(float64) bool{
		`sum(rate(istio_requests_total{reporter="waypoint",destination_service="greeter.shop.svc.cluster.local"}[1m])) by (destination_service, response_code)`: func(v float64) bool { return v > 0 },
		`histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="waypoint",destination_workload="greeter-v1"}[1m])) by (le))`:    func(v float64) bool { return v > 0 && v <= 5000 },
		`sum(istio_requests_total{reporter="waypoint",response_code=~"0|20|OK|REPLY"}) / sum(istio_requests_total{reporter="waypoint"})`: func(v float64) bool {
			return v == float64(okCalls)/totalCalls
		},
		`sum(istio_request_duration_milliseconds_count{destination_app="greeter",destination_version="v1",destination_principal="spiffe://cluster.local/ns/shop/sa/greeter"})`: func(v float64) bool {
			return v == okCalls+failCalls
		},
		`sum(istio_request_bytes_count{destination_service_name="greeter",destination_service_namespace="shop"})`: func(v float64) bool { return v == okCalls+failCalls },
		`sum(istio_response_bytes_sum{destination_workload_namespace="shop"}) > 0`:                                func(v float64) bool { return v > 0 },
		`sum(istio_tcp_connections_opened_total{reporter="waypoint"})`:                                            func(v float64) bool { return v >= 1 },
	}
	for q, ok := range queries {
		vs, err := prom.vector(q)
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		if len(vs) == 0 {
			t.Errorf("%s: no data", q)
			continue
		}
		for _, s := range vs {
			if v := s.value(t); !ok(v) {
				t.Errorf("%s = %v (%v): not what the calls make", q, v, s.Metric)
			}
		}
	}

	t.Run("dashboards", func(t *testing.T) { checkDashboards(t, prom) })
}

// calls makes the calls numbered from to to (exclusive) of each kind
// (those of a kind with fewer calls are left out).
func calls(t *testing.T, c *dubbokit.Consumer, from, to int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < to; i++ {
		if i < okCalls {
			if _, err := c.SayHello(ctx, strconv.Itoa(i)); err != nil {
				t.Fatalf("sayHello %d: %v", i, err)
			}
		}
		if i < failCalls {
			if _, err := c.Call(ctx, dubbokit.MethodFail, strconv.Itoa(i)); err == nil {
				t.Fatalf("fail %d succeeded", i)
			}
		}
		if i < noRouteCalls {
			if _, err := c.Echo(ctx, strconv.Itoa(i)); err == nil {
				t.Fatalf("echo %d (no route) succeeded", i)
			}
		}
	}
}

// waitForCalls waits until Prometheus has scraped n calls.
func waitForCalls(t *testing.T, prom *promServer, n float64) {
	t.Helper()
	var last float64
	if err := testutil.Poll(30*time.Second, "Prometheus to scrape every call", func() (bool, error) {
		v, err := prom.scalar(`sum(istio_requests_total{reporter="waypoint",request_protocol="dubbo"})`)
		last = v
		return err == nil && v == n, nil
	}); err != nil {
		t.Fatalf("%v: last saw %v of %v", err, last, n)
	}
}

// checkDashboards runs every query of the dashboards in
// manifests/dashboards: each must parse (Prometheus refuses a bad one) and
// return data from the proxy and controller the test runs.
func checkDashboards(t *testing.T, prom *promServer) {
	files, err := filepath.Glob(filepath.Join("..", "..", "manifests", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in manifests/dashboards: %v", err)
	}
	for _, f := range files {
		exprs, err := dashboardExprs(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(exprs) == 0 {
			t.Errorf("%s: no queries", f)
		}
		for _, e := range exprs {
			q := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "5m").Replace(e)
			vs, err := prom.vector(q)
			switch {
			case err != nil:
				t.Errorf("%s: %s: %v", filepath.Base(f), e, err)
			case len(vs) == 0:
				t.Errorf("%s: %s: no data", filepath.Base(f), e)
			}
		}
	}
}

// dashboardExprs are the expr of every panel's targets, nested rows
// included.
func dashboardExprs(file string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	var out []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if tg.Expr != "" {
					out = append(out, tg.Expr)
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out, nil
}

type panel struct {
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// prometheusBinary is the Prometheus that hack/build-prometheus.sh built:
// ROSETTA_PROMETHEUS's folder, else the script's default one.
func prometheusBinary(t *testing.T) string {
	dir := os.Getenv("ROSETTA_PROMETHEUS")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "rosetta", "prometheus-v0.316.0")
	}
	bin := filepath.Join(dir, "prometheus")
	if _, err := os.Stat(bin); err != nil {
		testutil.Unavailable(t, "Prometheus (make prometheus, hack/build-prometheus.sh)", err)
	}
	return bin
}

// startFolderController builds and runs rosetta-controller in folder mode
// (an empty folder), and returns the address of its /metrics.
func startFolderController(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := testutil.GoBuild(t, filepath.Join("..", ".."), "./cmd/rosetta-controller")
	cfg := filepath.Join(dir, "config")
	if err := os.Mkdir(cfg, 0o755); err != nil {
		t.Fatal(err)
	}
	return testutil.OnFreePorts(t, 2, func(ports []int) (string, error) {
		addr := fmt.Sprintf("127.0.0.1:%d", ports[1])
		p := testutil.StartT(t, testutil.Command{Name: "rosetta-controller", Path: bin, Args: []string{
			"--config-dir", cfg, "--xds-address", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--http-address", addr, "--debug-address", "",
		}})
		return addr, p.Ready(proxyWait, "ready", testutil.HTTPOK("http://"+addr+"/readyz"))
	})
}

// promServer is a running Prometheus.
type promServer struct{ addr string }

// startPrometheus runs Prometheus scraping each job's one target every
// 500 ms.
func startPrometheus(t *testing.T, bin string, jobs map[string]string) *promServer {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n")
	for job, target := range jobs {
		fmt.Fprintf(&b, "  - job_name: %s\n    static_configs:\n      - targets: [%q]\n", job, target)
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return testutil.OnFreePorts(t, 1, func(ports []int) (*promServer, error) {
		s := &promServer{addr: fmt.Sprintf("127.0.0.1:%d", ports[0])}
		p := testutil.StartT(t, testutil.Command{Name: "prometheus", Path: bin, Dir: dir, Args: []string{
			"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + s.addr, "--log.level=warn",
		}})
		return s, p.Ready(time.Minute, "ready", testutil.HTTPOK("http://"+s.addr+"/-/ready"))
	})
}

// sample is one series of an instant vector.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s sample) value(t *testing.T) float64 {
	t.Helper()
	str, _ := s.Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		t.Fatalf("sample %v: %v", s, err)
	}
	return v
}

// vector runs an instant query; a query Prometheus cannot parse or run is
// an error with its message.
func (p *promServer) vector(q string) ([]sample, error) {
	r, err := http.Get("http://" + p.addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", body, err)
	}
	if out.Status != "success" {
		return nil, errors.New(out.Error)
	}
	if out.Data.ResultType == "scalar" {
		var v [2]any
		if err := json.Unmarshal(out.Data.Result, &v); err != nil {
			return nil, err
		}
		return []sample{{Value: v}}, nil
	}
	var vs []sample
	if err := json.Unmarshal(out.Data.Result, &vs); err != nil {
		return nil, err
	}
	return vs, nil
}

// scalar is the value of a query that gives one series.
func (p *promServer) scalar(q string) (float64, error) {
	vs, err := p.vector(q)
	if err != nil || len(vs) != 1 {
		return 0, fmt.Errorf("%s: %d series, %v", q, len(vs), err)
	}
	str, _ := vs[0].Value[1].(string)
	return strconv.ParseFloat(str, 64)
}
