#!/usr/bin/env bash
# Regenerates what is generated from the API types: deepcopy functions,
# the CRDs in crds/ (and the chart's copy), and manifests/rendered.
set -euo pipefail
cd "$(dirname "$0")/.."
go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0 \
  object paths=./pkg/apis/... \
  crd:allowDangerousTypes=true output:crd:artifacts:config=crds
cp crds/*.yaml manifests/charts/rosetta/crds/
(cd e2e/k8s && go test -count=1 -run TestRenderedManifestsMatchChart -update . >/dev/null)
echo "regenerated deepcopy, crds/, the chart's CRDs and manifests/rendered"
