#!/usr/bin/env bash
# Regenerates what is generated from the API types: deepcopy functions,
# the CRDs in crds/ (and the chart's copy), and manifests/rendered.
# The API types are the shared groups in pkg/apis and every protocol's own
# in protocols/<name>/api, found by the glob: a new protocol's types need
# no edit here.
set -euo pipefail
cd "$(dirname "$0")/.."
paths=./pkg/apis/...
for d in protocols/*/api; do paths+=";./$d/..."; done
go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0 \
  object paths="$paths" \
  crd:allowDangerousTypes=true output:crd:artifacts:config=crds
cp crds/*.yaml manifests/charts/rosetta/crds/
(cd e2e/k8s && go test -count=1 -run TestRenderedManifestsMatchChart -update . >/dev/null)
echo "regenerated deepcopy, crds/, the chart's CRDs and manifests/rendered"
