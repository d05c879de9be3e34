package proxy

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// MetricsHandler serves what may be reached from outside the pod: /ready
// (for the kubelet's probe) and /metrics (for Prometheus). It serves no
// configuration and no profiles.
func (p *Proxy) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	p.handleHealth(mux)
	return mux
}

// AdminHandler serves /ready, /metrics, /config_dump, /explain and
// /debug/pprof/.
// The config dump shows routes, upstream addresses and codec options (with
// credentials redacted), and pprof lets a caller spend the proxy's CPU: serve it on loopback only.
func (p *Proxy) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	p.handleHealth(mux)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/config_dump", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(p.ConfigDump())
	})
	mux.HandleFunc("/explain", p.handleExplain)
	return mux
}

func (p *Proxy) handleHealth(mux *http.ServeMux) {
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !p.Ready() {
			http.Error(w, "no configuration yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("/metrics", p.metrics.Handler())
}

// ServeAdmin serves the admin endpoints on ln until it is closed.
func (p *Proxy) ServeAdmin(ln net.Listener) error {
	return serveHTTP(ln, p.AdminHandler())
}

// ServeMetrics serves /ready and /metrics on ln until it is closed.
func (p *Proxy) ServeMetrics(ln net.Listener) error {
	return serveHTTP(ln, p.MetricsHandler())
}

// serveHTTP bounds the time to send headers, so that idle connections
// cannot pin goroutines on a port reachable from outside the pod.
func serveHTTP(ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// ConfigDump is the configuration in force as JSON: every resource in the
// protobuf JSON mapping, under listeners, clusters, endpoints, routes and
// secrets. Credentials are redacted (config.Redacted): secrets show their
// names and where they are read from, never their values.
func (p *Proxy) ConfigDump() []byte {
	dump := map[string][]json.RawMessage{"listeners": {}, "clusters": {}, "endpoints": {}, "routes": {}, "secrets": {}}
	if s := p.snap.Load(); s != nil {
		r := config.Redacted(s.resources)
		dump["listeners"] = marshalAll(r.Listeners)
		dump["clusters"] = marshalAll(r.Clusters)
		dump["endpoints"] = marshalAll(r.Endpoints)
		dump["routes"] = marshalAll(r.Routes)
		dump["secrets"] = marshalAll(r.Secrets)
	}
	out, _ := json.MarshalIndent(dump, "", "  ")
	return out
}

func marshalAll[M proto.Message](ms []M) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(ms))
	for _, m := range ms {
		b, err := protojson.Marshal(m)
		if err != nil {
			b, _ = json.Marshal(map[string]string{"error": err.Error()})
		}
		out = append(out, b)
	}
	return out
}
