#!/usr/bin/env bash
# Builds a minimal OpenTelemetry Collector once, into a cache outside the
# checkout; later runs take a second. Prints the folder. The e2e tests of
# tracing (e2e/dubbo) run it as a real OTLP receiver: the OTLP receiver
# (gRPC and HTTP) and contrib's file exporter, which writes every batch of
# spans as a line of OTLP JSON that the tests read.
#
#   hack/build-otelcol.sh                       # into ~/.cache/rosetta/otelcol-<version>
#   ROSETTA_OTELCOL=/some/dir hack/build-otelcol.sh
#
# Cold build on the 2-core machine: 209 s user + 67 s system CPU (23 minutes
# of wall clock with six other builds running; about 3 minutes idle), a
# 26 MB binary. Needs only the Go module proxy.
set -euo pipefail

# One collector release throughout: contrib's fileexporter is served up to
# v0.161.0, which goes with the collector's v0.161.0 / v1.67.0 modules.
OTELCOL_VERSION=${OTELCOL_VERSION:-v0.161.0}
OTELCOL_STABLE=${OTELCOL_STABLE:-v1.67.0}

out=${ROSETTA_OTELCOL:-$HOME/.cache/rosetta/otelcol-$OTELCOL_VERSION}
if [[ -x $out/otelcol ]]; then
  echo "$out"
  exit 0
fi
src=$out/src
mkdir -p "$src"
export GOFLAGS=-mod=mod
log() { echo "build-otelcol: $*" >&2; }

cat >"$src/go.mod" <<MOD
module rosetta.dev/otelcol-tools

go 1.26.0

require (
	github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter $OTELCOL_VERSION
	go.opentelemetry.io/collector/component $OTELCOL_STABLE
	go.opentelemetry.io/collector/confmap $OTELCOL_STABLE
	go.opentelemetry.io/collector/confmap/provider/envprovider $OTELCOL_STABLE
	go.opentelemetry.io/collector/confmap/provider/fileprovider $OTELCOL_STABLE
	go.opentelemetry.io/collector/exporter $OTELCOL_STABLE
	go.opentelemetry.io/collector/otelcol $OTELCOL_VERSION
	go.opentelemetry.io/collector/receiver $OTELCOL_STABLE
	go.opentelemetry.io/collector/receiver/otlpreceiver $OTELCOL_VERSION
	go.opentelemetry.io/collector/service $OTELCOL_VERSION
)
MOD
cat >"$src/main.go" <<GO
// Command otelcol is an OpenTelemetry Collector with only an OTLP receiver
// and a file exporter: what Rosetta's tracing tests need.
package main

import (
	"log"

	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

func factories() (otelcol.Factories, error) {
	f := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}
	var err error
	if f.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory()); err != nil {
		return f, err
	}
	f.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](fileexporter.NewFactory())
	return f, err
}

func main() {
	set := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{Command: "otelcol", Description: "OTLP receiver writing spans to a file", Version: "$OTELCOL_VERSION"},
		Factories: factories,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{ResolverSettings: confmap.ResolverSettings{
			ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory(), envprovider.NewFactory()},
			DefaultScheme:     "env",
		}},
	}
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		log.Fatal(err)
	}
}
GO
(
  cd "$src"
  log "resolving the collector $OTELCOL_VERSION"
  go mod tidy >&2
  log "building otelcol (3 minutes cold on an idle 2-core machine)"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/otelcol.tmp" .
)

# Rename last, so an interrupted build is never taken for a finished one.
mv "$out/otelcol.tmp" "$out/otelcol"
echo "$out"
