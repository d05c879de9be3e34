package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/spf13/pflag"
)

// identityOptions say where the proxy's Istio workload certificate comes
// from. The defaults are the paths Istio's own sidecar injection mounts.
type identityOptions struct {
	source    string // "", "istiod" or "files"
	caAddress string
	rootCert  string
	tokenFile string
	clusterID string
	ttl       time.Duration
	certDir   string
}

func (o *identityOptions) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.source, "identity", "", "where the proxy's Istio workload certificate comes from, for mTLS: istiod (its CA, with a ServiceAccount token) or files (--cert-dir); empty: no identity, plaintext only")
	fs.StringVar(&o.caAddress, "ca-address", "istiod.istio-system.svc:15012", "istiod's CA (with --identity istiod)")
	fs.StringVar(&o.rootCert, "ca-root-cert", "/var/run/secrets/istio/root-cert.pem", "the mesh root certificate, as the istio-ca-root-cert ConfigMap holds it (with --identity istiod)")
	fs.StringVar(&o.tokenFile, "token-file", "/var/run/secrets/tokens/istio-token", "a projected ServiceAccount token with audience istio-ca (with --identity istiod)")
	fs.StringVar(&o.clusterID, "cluster-id", identity.DefaultClusterID, "the Istio cluster ID (with --identity istiod)")
	fs.DurationVar(&o.ttl, "cert-ttl", identity.DefaultTTL, "the lifetime to ask istiod for; the certificate is renewed at half of it (with --identity istiod)")
	fs.StringVar(&o.certDir, "cert-dir", "/etc/certs", "a folder with cert-chain.pem, key.pem and root-cert.pem, as istio-agent or cert-manager write them (with --identity files)")
}

// source is the certificate source the options name; nil for none.
func (o *identityOptions) sourceOf() (identity.Source, error) {
	switch o.source {
	case "":
		return nil, nil
	case "istiod":
		return &identity.IstiodSource{Addr: o.caAddress, RootCertFile: o.rootCert, TokenFile: o.tokenFile, ClusterID: o.clusterID, TTL: o.ttl}, nil
	case "files":
		return &identity.FileSource{
			CertFile: filepath.Join(o.certDir, "cert-chain.pem"),
			KeyFile:  filepath.Join(o.certDir, "key.pem"),
			RootFile: filepath.Join(o.certDir, "root-cert.pem"),
		}, nil
	}
	return nil, fmt.Errorf("--identity: %q is neither istiod nor files", o.source)
}

// start gets the first certificate (the proxy does not start without the
// identity it was asked to have) and keeps it fresh until ctx ends; nil
// when no identity was asked for.
func (o *identityOptions) start(ctx context.Context, log *slog.Logger) (*identity.Workload, error) {
	src, err := o.sourceOf()
	if src == nil || err != nil {
		return nil, err
	}
	w := identity.NewWorkload(src, log)
	if err := w.Start(ctx); err != nil {
		return nil, err
	}
	log.Info("workload identity", "id", w.Current().ID.String(), "expires", w.Current().NotAfter)
	return w, nil
}
