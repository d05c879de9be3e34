#!/usr/bin/env bash
# Builds kube-apiserver and kubectl (k8s.io/kubernetes, staging modules
# pinned by replace directives) and etcd (go.etcd.io/etcd/server/v3) once,
# into a git-ignored cache; later runs take a second. Prints the folder.
#
#   hack/build-k8s-tools.sh            # builds into .cache/k8s-tools-<versions>
#   ROSETTA_K8S_TOOLS=/some/dir hack/build-k8s-tools.sh
#
# Cold build on a 2-core machine: about 6 minutes (kube-apiserver) plus
# 2 (kubectl) and 1 (etcd). Needs only the Go module proxy.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
STAGING_VERSION=${STAGING_VERSION:-v0.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${ROSETTA_K8S_TOOLS:-$repo/.cache/k8s-tools-$K8S_VERSION-etcd-$ETCD_VERSION}
if [[ -x $out/kube-apiserver && -x $out/kubectl && -x $out/etcd ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out/src/k8s" "$out/src/etcd"
export GOFLAGS=-mod=mod
log() { echo "build-k8s-tools: $*" >&2; }

# --- kube-apiserver and kubectl ---
k8s=$out/src/k8s
modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
{
  echo "module rosetta.dev/k8s-tools"
  echo
  echo "go 1.26.0"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  # Every staging module at the matching version; sample-cli-plugin is not
  # served and not needed.
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$modfile" | grep -v sample-cli-plugin |
    while read -r m; do echo "replace $m => $m $STAGING_VERSION"; done
} >"$k8s/go.mod"
cat >"$k8s/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
major=${K8S_VERSION#v}; major=${major%%.*}
minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
(
  cd "$k8s"
  log "resolving k8s.io/kubernetes $K8S_VERSION"
  go mod tidy >&2
  log "building kube-apiserver (about 6 minutes cold)"
  CGO_ENABLED=0 go build -ldflags "$ldflags" -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  log "building kubectl"
  CGO_ENABLED=0 go build -ldflags "$ldflags" -o "$out/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl
)

# --- etcd ---
etcd=$out/src/etcd
cat >"$etcd/go.mod" <<MOD
module rosetta.dev/etcd-tools

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
cat >"$etcd/main.go" <<'GO'
// Command etcd is etcd's own server main, built from its Go module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
(
  cd "$etcd"
  log "building etcd $ETCD_VERSION"
  go mod tidy >&2
  CGO_ENABLED=0 go build -ldflags "-s -w" -o "$out/etcd.tmp" .
)

# Rename last, so an interrupted build is never taken for a finished one.
for b in kube-apiserver kubectl etcd; do mv "$out/$b.tmp" "$out/$b"; done
echo "$out"
