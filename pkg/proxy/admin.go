package proxy

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// AdminHandler serves /ready, /metrics and /config_dump.
func (p *Proxy) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !p.Ready() {
			http.Error(w, "no configuration yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("/metrics", p.metrics.Handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/config_dump", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(p.ConfigDump())
	})
	return mux
}

// ServeAdmin serves the admin endpoints on ln until it is closed.
func (p *Proxy) ServeAdmin(ln net.Listener) error {
	srv := &http.Server{Handler: p.AdminHandler()}
	return srv.Serve(ln)
}

// ConfigDump is the configuration in force as JSON: every resource in the
// protobuf JSON mapping, under listeners, clusters, endpoints and routes.
func (p *Proxy) ConfigDump() []byte {
	dump := map[string][]json.RawMessage{"listeners": {}, "clusters": {}, "endpoints": {}, "routes": {}}
	if s := p.snap.Load(); s != nil {
		r := s.resources
		dump["listeners"] = marshalAll(r.Listeners)
		dump["clusters"] = marshalAll(r.Clusters)
		dump["endpoints"] = marshalAll(r.Endpoints)
		dump["routes"] = marshalAll(r.Routes)
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
