package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/xds"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
	"github.com/rosetta-mesh/rosetta/pkg/xds/xdstest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestXDSSecurityFlags: which flag sets are refused, and what the others
// configure. None of them reaches istiod or the API server.
func TestXDSSecurityFlags(t *testing.T) {
	ca := xdstest.NewCA(t, "mesh")
	certPEM, keyPEM := ca.Mesh(t, "spiffe://cluster.local/ns/rosetta-system/sa/rosetta-controller")
	cert, key := xdstest.WriteFile(t, "tls.crt", certPEM), xdstest.WriteFile(t, "tls.key", keyPEM)
	roots := xdstest.WriteFile(t, "ca.crt", ca.RootPEM())
	files := []string{"--xds-tls-cert=" + cert, "--xds-tls-key=" + key}
	kubeconfig := xdstest.WriteFile(t, "kubeconfig", []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`))

	for _, tc := range []struct {
		name      string
		args      []string
		inCluster bool
		wantErr   string
		// wantTLS and wantAuth (authenticator types, in order) when no error.
		wantTLS  bool
		wantAuth []string
	}{
		{name: "defaults outside a cluster", args: nil},
		{name: "defaults in a cluster need TLS", inCluster: true, wantErr: "--xds-auth=token needs TLS"},
		{name: "none in a cluster", inCluster: true, args: []string{"--xds-auth=none"}},
		{name: "token without TLS", args: []string{"--xds-auth=token"}, wantErr: "needs TLS"},
		{name: "mtls with files needs their CA", args: append([]string{"--xds-auth=mtls"}, files...), wantErr: "needs --xds-tls-ca"},
		{name: "none combined", args: []string{"--xds-auth=none,token"}, wantErr: "cannot be combined"},
		{name: "unknown method", args: []string{"--xds-auth=jwt"}, wantErr: `"jwt" is none of`},
		{name: "a certificate without its key", args: []string{"--xds-tls-cert=" + cert}, wantErr: "go together"},
		{name: "a CA without a certificate", args: []string{"--xds-tls-ca=" + roots}, wantErr: "needs --xds-tls-cert"},
		{name: "an unknown identity source", args: []string{"--xds-identity=files"}, wantErr: "only istiod"},
		{name: "two certificate sources", args: append([]string{"--xds-identity=istiod"}, files...), wantErr: "give one"},
		{name: "a missing certificate file", args: []string{"--xds-tls-cert=/nonexistent", "--xds-tls-key=" + key}, wantErr: "nonexistent"},
		{name: "TLS without authentication", args: files, wantTLS: true},
		{name: "mtls", args: append([]string{"--xds-auth=mtls", "--xds-tls-ca=" + roots}, files...), wantTLS: true,
			wantAuth: []string{"xds.CertAuthenticator"}},
		{name: "token or mtls, certificate first", args: append([]string{"--xds-auth=token,mtls", "--xds-tls-ca=" + roots, "--kubeconfig=" + kubeconfig}, files...),
			wantTLS: true, wantAuth: []string{"xds.CertAuthenticator", "*xds.TokenReviewer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parseFlags(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			var opts xds.Options
			err = f.xds.configure(context.Background(), f.kubeconfig, tc.inCluster, quiet, nil, &opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (opts.TLS != nil) != tc.wantTLS {
				t.Errorf("TLS = %v, want %v", opts.TLS != nil, tc.wantTLS)
			}
			var got []string
			for _, a := range opts.Authenticators {
				got = append(got, fmt.Sprintf("%T", a))
			}
			if strings.Join(got, " ") != strings.Join(tc.wantAuth, " ") {
				t.Errorf("authenticators %v, want %v", got, tc.wantAuth)
			}
		})
	}
}

// TestFolderModeMTLS: the command serves xDS over TLS with its
// certificate files and takes a proxy's namespace from its certificate,
// not from the namespace it claims (the services of namespaces.yaml are
// visible in their own namespace only).
func TestFolderModeMTLS(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join("..", "..", "pkg", "xds", "testdata", "namespaces.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "namespaces.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	ca := xdstest.NewCA(t, "mesh")
	const controllerID = "spiffe://cluster.local/ns/rosetta-system/sa/rosetta-controller"
	certPEM, keyPEM := ca.Mesh(t, controllerID)
	xdsAddr, httpAddr := freeAddr(t), freeAddr(t)
	f, err := parseFlags([]string{"--config-dir", dir, "--xds-address", xdsAddr, "--http-address", httpAddr, "--debug-address=", "--debounce", "10ms",
		"--xds-tls-cert", xdstest.WriteFile(t, "tls.crt", certPEM), "--xds-tls-key", xdstest.WriteFile(t, "tls.key", keyPEM),
		"--xds-tls-ca", xdstest.WriteFile(t, "ca.crt", ca.RootPEM()), "--xds-auth", "mtls"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, f, quiet) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	got := make(chan config.Resources, 16)
	cctx, ccancel := context.WithCancel(context.Background())
	defer ccancel()
	opts := client.Options{Address: xdsAddr, NodeID: "p1", Namespace: "beta", Logger: quiet,
		Identity: ca.Workload(t, "spiffe://cluster.local/ns/alpha/sa/proxy"), ControllerIDs: []string{controllerID}}
	go func() {
		_ = client.Run(cctx, opts, func(r config.Resources) error { got <- r; return nil })
	}()
	select {
	case r := <-got:
		if len(r.Listeners) != 1 || r.Listeners[0].GetName() != "greeter.alpha.svc.cluster.local_20880" {
			t.Fatalf("listeners %v, want only alpha's greeter", r.Listeners)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no config")
	}
}
