package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rosetta-mesh/rosetta/pkg/identity"
)

// checkSecurity refuses options that would not do what they say.
func checkSecurity(opts *Options) error {
	secure := opts.Identity != nil || opts.CAFile != ""
	switch {
	case opts.TokenFile != "" && !secure:
		return errors.New("xds/client: a token file needs TLS to the controller (Identity or CAFile): a token is never sent in plaintext")
	case len(opts.ControllerIDs) > 0 && (opts.Identity == nil || opts.CAFile != ""):
		return errors.New("xds/client: ControllerIDs check a mesh certificate: they need Identity, and no CAFile")
	case opts.ServerName != "" && opts.CAFile == "":
		return errors.New("xds/client: ServerName checks a plain server certificate: it needs CAFile")
	}
	return nil
}

// transportCredentials makes the connection's credentials from opts,
// reading CAFile again.
func transportCredentials(opts *Options) (credentials.TransportCredentials, error) {
	if opts.Identity == nil && opts.CAFile == "" {
		return insecure.NewCredentials(), nil
	}
	name := opts.ServerName
	if name == "" {
		name = hostOf(opts.Address)
	}
	cfg, err := identity.GRPCClientConfig(opts.Identity, opts.ControllerIDs, opts.CAFile, name)
	if err != nil {
		return nil, fmt.Errorf("xds/client: controller TLS: %w", err)
	}
	return credentials.NewTLS(cfg), nil
}

// hostOf is the host of a "host:port" address (gRPC's default server
// name), without a resolver scheme.
func hostOf(addr string) string {
	if i := strings.LastIndex(addr, "///"); i >= 0 {
		addr = addr[i+3:]
	}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// tokenFile sends the token in a file as "authorization: Bearer" with
// each RPC: once per stream, so once per (re)connect. The file is read
// each time, so a rotated token is used from the next stream on.
type tokenFile string

func (f tokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return nil, fmt.Errorf("xds/client: token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return nil, fmt.Errorf("xds/client: token file %s is empty", string(f))
	}
	return map[string]string{"authorization": "Bearer " + token}, nil
}

// RequireTransportSecurity keeps gRPC from sending the token in
// plaintext.
func (tokenFile) RequireTransportSecurity() bool { return true }

// Interface guards.
var _ credentials.PerRPCCredentials = tokenFile("")
