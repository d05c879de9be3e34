#!/usr/bin/env bash
# Builds istiod (pilot-discovery, from the Go module istio.io/istio) once,
# into a cache outside the checkout; later runs take a second. Prints the
# folder. The e2e module e2e/istio runs it next to a real kube-apiserver.
#
#   hack/build-istiod.sh                       # into ~/.cache/rosetta/istiod-<version>
#   ROSETTA_ISTIOD=/some/dir hack/build-istiod.sh
#
# Cold build on a 2-core machine: about 8 minutes idle, up to 20 under load
# (a 180 MB binary; most of the time goes to compiling Envoy's and Kubernetes'
# API packages). Needs only the Go module proxy.
set -euo pipefail

# What `go get istio.io/istio@latest` gave on 2026-12-06: Istio 1.31.
ISTIO_VERSION=${ISTIO_VERSION:-v0.0.0-20260827124520-eed52ebb66ad}

out=${ROSETTA_ISTIOD:-$HOME/.cache/rosetta/istiod-$ISTIO_VERSION}
if [[ -x $out/pilot-discovery ]]; then
  echo "$out"
  exit 0
fi
src=$out/src
mkdir -p "$src"
export GOFLAGS=-mod=mod
log() { echo "build-istiod: $*" >&2; }

cat >"$src/go.mod" <<MOD
module rosetta.dev/istiod-tools

go 1.26.0

require istio.io/istio $ISTIO_VERSION
MOD
cat >"$src/tools.go" <<'GO'
//go:build tools

package tools

import _ "istio.io/istio/pilot/cmd/pilot-discovery"
GO
(
  cd "$src"
  log "resolving istio.io/istio $ISTIO_VERSION"
  go mod tidy >&2
  log "building pilot-discovery (8-20 minutes cold)"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/pilot-discovery.tmp" istio.io/istio/pilot/cmd/pilot-discovery
)

# Rename last, so an interrupted build is never taken for a finished one.
mv "$out/pilot-discovery.tmp" "$out/pilot-discovery"
echo "$out"
