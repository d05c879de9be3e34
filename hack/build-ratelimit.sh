#!/usr/bin/env bash
# Builds Envoy's rate limit service (github.com/envoyproxy/ratelimit, its
# src/service_cmd main) once, into a cache outside the checkout; later runs
# take a second. Prints the folder, which holds the binary `ratelimit`.
# e2e/dubbo runs it, with a real redis-server as its store, to prove a
# MetaRouter's globalRateLimit.
#
#   hack/build-ratelimit.sh                        # into ~/.cache/rosetta/ratelimit-<version>
#   ROSETTA_RATELIMIT=/some/dir hack/build-ratelimit.sh
#
# Cold build on a 2-core machine: about 10 minutes while six other builds
# and tests shared it (module downloads included); a 24 MB binary. Needs
# only the Go module proxy.
set -euo pipefail

# What `go list -m github.com/envoyproxy/ratelimit@latest` gave on
# 2026-12-07 (the project tags no releases the proxy serves).
RATELIMIT_VERSION=${RATELIMIT_VERSION:-v1.4.1-0.20260122083618-3fb702589d36}

out=${ROSETTA_RATELIMIT:-$HOME/.cache/rosetta/ratelimit-$RATELIMIT_VERSION}
if [[ -x $out/ratelimit ]]; then
  echo "$out"
  exit 0
fi
src=$out/src
mkdir -p "$src"
export GOFLAGS=-mod=mod
log() { echo "build-ratelimit: $*" >&2; }

cat >"$src/go.mod" <<MOD
module rosetta.dev/ratelimit-tools

go 1.26.0

require github.com/envoyproxy/ratelimit $RATELIMIT_VERSION
MOD
cat >"$src/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/envoyproxy/ratelimit/src/service_cmd"
GO
(
  cd "$src"
  log "resolving github.com/envoyproxy/ratelimit $RATELIMIT_VERSION"
  go mod tidy >&2
  log "building the rate limit service"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/ratelimit.tmp" github.com/envoyproxy/ratelimit/src/service_cmd
)

# Rename last, so an interrupted build is never taken for a finished one.
mv "$out/ratelimit.tmp" "$out/ratelimit"
echo "$out"
