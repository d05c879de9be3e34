#!/usr/bin/env bash
# Builds the Prometheus server (cmd/prometheus, from the Go module
# github.com/prometheus/prometheus) once, into a cache outside the checkout;
# later runs take a second. Prints the folder. e2e/dubbo's metrics test runs
# it to scrape a rosetta-proxy and a rosetta-controller.
#
#   hack/build-prometheus.sh                   # into ~/.cache/rosetta/prometheus-<version>
#   ROSETTA_PROMETHEUS=/some/dir hack/build-prometheus.sh
#
# Built with Prometheus's own `remove_all_sd` tag: only static, file and
# HTTP service discovery stay (the tests list their targets), which leaves
# out the cloud and Kubernetes SDKs. Cold build (fresh GOCACHE, modules
# downloaded too) measured 2026-12-07: 41.6 minutes on 2 cores at a load
# average of about 23 (seven builds at once); not yet measured idle.
# Needs only the Go module proxy.
set -euo pipefail

PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}

out=${ROSETTA_PROMETHEUS:-$HOME/.cache/rosetta/prometheus-$PROMETHEUS_VERSION}
if [[ -x $out/prometheus ]]; then
  echo "$out"
  exit 0
fi
src=$out/src
mkdir -p "$src"
export GOFLAGS=-mod=mod
log() { echo "build-prometheus: $*" >&2; }

cat >"$src/go.mod" <<MOD
module rosetta.dev/prometheus-tools

go 1.26.0

require github.com/prometheus/prometheus $PROMETHEUS_VERSION
MOD
cat >"$src/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
GO
(
  cd "$src"
  log "resolving github.com/prometheus/prometheus $PROMETHEUS_VERSION"
  go mod tidy >&2
  log "building cmd/prometheus"
  CGO_ENABLED=0 go build -trimpath -tags remove_all_sd -ldflags "-s -w" \
    -o "$out/prometheus.tmp" github.com/prometheus/prometheus/cmd/prometheus
)

# Rename last, so an interrupted build is never taken for a finished one.
mv "$out/prometheus.tmp" "$out/prometheus"
echo "$out"
