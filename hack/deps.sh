#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: apt packages and Go
# tools. Idempotent: it installs only what is missing. Run as root (CI is).
set -euo pipefail

apt_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || apt_pkgs+=("$2"); }
need protoc protobuf-compiler
need thrift thrift-compiler
need redis-server redis-server
need redis-cli redis-tools
need nutcracker nutcracker
need haproxy haproxy
# protoc's well-known types (google/protobuf/duration.proto), for make generate
[ -f /usr/include/google/protobuf/duration.proto ] || apt_pkgs+=(libprotobuf-dev)
/usr/bin/python3 -c 'import thrift' >/dev/null 2>&1 || apt_pkgs+=(python3-thrift)

if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "hack/deps.sh: installing ${apt_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
  # Debian starts services it installs; the tests start their own.
  for svc in redis-server nutcracker haproxy; do
    (service "$svc" stop || true) >/dev/null 2>&1
  done
fi

bin="$(cd "$(dirname "$0")/.." && pwd)/bin"
mkdir -p "$bin"
[ -x "$bin/staticcheck" ] || GOBIN="$bin" go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
[ -x "$bin/protoc-gen-go" ] || GOBIN="$bin" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
