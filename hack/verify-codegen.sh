#!/usr/bin/env bash
# Fails when generated files are stale (run hack/update-codegen.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The API types, as hack/update-codegen.sh finds them.
paths=./pkg/apis/...
for d in protocols/*/api; do paths+=";./$d/..."; done
go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0 \
  paths="$paths" crd:allowDangerousTypes=true output:crd:artifacts:config="$tmp"
diff -r "$tmp" crds >/dev/null || { echo "crds/ is stale: run hack/update-codegen.sh" >&2; exit 1; }
for f in crds/*.yaml; do
  diff -q "$f" "manifests/charts/rosetta/crds/$(basename "$f")" >/dev/null ||
    { echo "manifests/charts/rosetta/crds/$(basename "$f") differs from $f: run hack/update-codegen.sh" >&2; exit 1; }
done
echo "generated files are up to date"
