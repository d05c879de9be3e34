package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/xds"
)

// xdsSecurity holds the flags of the xDS port's TLS and of how proxies
// authenticate.
//
// TLS: --xds-tls-cert and --xds-tls-key serve a certificate from files
// (cert-manager's, or a mesh certificate written by istio-agent), with
// --xds-tls-ca the roots that verify proxies' certificates; or
// --xds-identity=istiod gets the controller a mesh certificate from
// istiod's CA as any workload has (the controller runs in the mesh too),
// and verifies proxies against the mesh roots.
//
// Authentication (--xds-auth): token (a projected ServiceAccount token
// with audience --xds-token-audience, checked with TokenReview, as istiod
// checks its clients), mtls (a client certificate of the mesh), or both
// (either one). The namespace a proxy proves replaces the one its node
// metadata claims. none trusts the node metadata: for folder mode and
// local runs. The default is token when the controller runs in a cluster
// (Kubernetes mode with the in-cluster config: no --kubeconfig), where
// every proxy has a ServiceAccount, and none otherwise (--config-dir or
// --kubeconfig: a developer's or a test's run).
type xdsSecurity struct {
	tlsCert, tlsKey, tlsCA string
	identity               string
	caAddress, caRootCert  string
	tokenFile, clusterID   string
	auth                   string
	tokenAudience          string
	trustDomain            string
}

func (x *xdsSecurity) register(fs *pflag.FlagSet) {
	fs.StringVar(&x.tlsCert, "xds-tls-cert", "", "serve xDS over TLS with this PEM certificate chain (with --xds-tls-key); read again when it changes")
	fs.StringVar(&x.tlsKey, "xds-tls-key", "", "the PEM private key of --xds-tls-cert")
	fs.StringVar(&x.tlsCA, "xds-tls-ca", "", "PEM roots that verify proxies' client certificates (--xds-auth=mtls with --xds-tls-cert)")
	fs.StringVar(&x.identity, "xds-identity", "", "istiod: serve xDS over TLS with a mesh certificate from istiod's CA (--ca-address, --ca-root-cert, --token-file), verifying proxies against the mesh roots")
	fs.StringVar(&x.caAddress, "ca-address", "istiod.istio-system.svc:15012", "istiod's CA (with --xds-identity=istiod)")
	fs.StringVar(&x.caRootCert, "ca-root-cert", "/var/run/secrets/istio/root-cert.pem", "the mesh root certificate, as the istio-ca-root-cert ConfigMap holds it (with --xds-identity=istiod)")
	fs.StringVar(&x.tokenFile, "token-file", "/var/run/secrets/tokens/istio-token", "a projected ServiceAccount token with audience istio-ca (with --xds-identity=istiod)")
	fs.StringVar(&x.clusterID, "cluster-id", identity.DefaultClusterID, "the Istio cluster ID (with --xds-identity=istiod)")
	fs.StringVar(&x.auth, "xds-auth", "", "how proxies prove their namespace: token, mtls, token,mtls (either), or none (trust node metadata); default token with the in-cluster config, none with --config-dir or --kubeconfig")
	fs.StringVar(&x.tokenAudience, "xds-token-audience", xds.DefaultTokenAudience, "the audience proxies' tokens must have (comma-separated for several); not istio-ca, so that tokens the controller sees cannot get certificates from istiod")
	fs.StringVar(&x.trustDomain, "trust-domain", xds.DefaultTrustDomain, "the mesh's trust domain, for the identity of a proxy authenticated by token")
}

// methods parses --xds-auth; an empty list means none.
func (x *xdsSecurity) methods(inCluster bool) ([]string, error) {
	auth := x.auth
	if auth == "" {
		auth = "none"
		if inCluster {
			auth = xds.MethodToken
		}
	}
	var out []string
	for _, m := range strings.Split(auth, ",") {
		switch m = strings.TrimSpace(m); m {
		case xds.MethodToken, xds.MethodMTLS:
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		case "none":
			if auth != "none" {
				return nil, fmt.Errorf("--xds-auth=%s: none cannot be combined", auth)
			}
		default:
			return nil, fmt.Errorf("--xds-auth=%s: %q is none of none, token, mtls", auth, m)
		}
	}
	return out, nil
}

// configure sets opts' TLS and Authenticators from the flags. It starts
// the controller's workload identity (the first certificate is fetched
// before it returns), and makes a Kubernetes client from kubeconfig (the
// in-cluster config when empty) for TokenReview. inCluster says the
// controller runs in a cluster, which makes token the default.
func (x *xdsSecurity) configure(ctx context.Context, kubeconfig string, inCluster bool, log *slog.Logger, reg prometheus.Registerer, opts *xds.Options) error {
	methods, err := x.methods(inCluster)
	if err != nil {
		return err
	}
	mtls := slices.Contains(methods, xds.MethodMTLS)
	var certs xds.CertSource
	switch {
	case x.identity != "" && x.identity != "istiod":
		return fmt.Errorf("--xds-identity=%s: only istiod is known (files: --xds-tls-cert and --xds-tls-key)", x.identity)
	case x.identity != "" && (x.tlsCert != "" || x.tlsKey != "" || x.tlsCA != ""):
		return errors.New("--xds-identity and --xds-tls-* are two ways to get a certificate: give one")
	case x.identity != "":
		w := identity.NewWorkload(&identity.IstiodSource{Addr: x.caAddress, RootCertFile: x.caRootCert,
			TokenFile: x.tokenFile, ClusterID: x.clusterID}, log)
		if err := w.Start(ctx); err != nil {
			return fmt.Errorf("xds identity: %w", err)
		}
		certs = xds.WorkloadCerts(w)
	case (x.tlsCert == "") != (x.tlsKey == ""):
		return errors.New("--xds-tls-cert and --xds-tls-key go together")
	case x.tlsCert != "":
		if mtls && x.tlsCA == "" {
			return errors.New("--xds-auth=mtls with --xds-tls-cert needs --xds-tls-ca, the roots of proxies' certificates")
		}
		fc := &xds.FileCerts{CertFile: x.tlsCert, KeyFile: x.tlsKey, CAFile: x.tlsCA}
		if _, _, err := fc.ServingCert(); err != nil {
			return err
		}
		certs = fc
	case x.tlsCA != "":
		return errors.New("--xds-tls-ca needs --xds-tls-cert and --xds-tls-key")
	}
	if certs == nil && len(methods) > 0 {
		return fmt.Errorf("--xds-auth=%s needs TLS on the xDS port: --xds-identity=istiod, or --xds-tls-cert and --xds-tls-key (--xds-auth=none trusts proxies' node metadata)",
			strings.Join(methods, ","))
	}
	if certs != nil {
		opts.TLS = xds.ServerTLS(certs, mtls)
	}
	opts.TrustDomain = x.trustDomain
	// A certificate first: it costs no API call.
	for _, m := range []string{xds.MethodMTLS, xds.MethodToken} {
		if !slices.Contains(methods, m) {
			continue
		}
		switch m {
		case xds.MethodMTLS:
			opts.Authenticators = append(opts.Authenticators, xds.CertAuthenticator{})
		case xds.MethodToken:
			cfg, err := restConfig(kubeconfig)
			if err != nil {
				return fmt.Errorf("--xds-auth=token needs the API server: %w", err)
			}
			cfg.UserAgent = "rosetta-controller"
			kc, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			var audiences []string
			for _, a := range strings.Split(x.tokenAudience, ",") {
				if a = strings.TrimSpace(a); a != "" {
					audiences = append(audiences, a)
				}
			}
			opts.Authenticators = append(opts.Authenticators, xds.NewTokenReviewer(xds.TokenReviewOptions{
				Client: kc, Audiences: audiences, Registerer: reg}))
		}
	}
	auth := "none"
	if len(methods) > 0 {
		auth = strings.Join(methods, ",")
	}
	log.Info("xds security", "tls", certs != nil, "auth", auth)
	return nil
}
