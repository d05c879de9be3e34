# Rosetta. `make demo` runs the main job, `make test` runs every test; each
# installs what it needs. See README.md.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
# Modules with their own go.mod under e2e/ (heavy test-only peers).
E2E_MODULES := $(sort $(dir $(wildcard e2e/*/go.mod)))
FUZZTIME ?= 30s
# kube-apiserver, etcd and kubectl for the API-server e2e, built once by
# hack/build-k8s-tools.sh into a cache outside the checkout, so a fresh clone
# (CI's) reuses them.
export ROSETTA_K8S_TOOLS ?= $(HOME)/.cache/rosetta/k8s-tools-v1.36.3-etcd-v3.6.16
# istiod (pilot-discovery from istio.io/istio) for e2e/istio, built once by
# hack/build-istiod.sh into the same cache.
export ROSETTA_ISTIOD ?= $(HOME)/.cache/rosetta/istiod-v0.0.0-20260827124520-eed52ebb66ad
# Envoy's rate limit service (github.com/envoyproxy/ratelimit) for e2e/dubbo's
# globalRateLimit tests, built once by hack/build-ratelimit.sh.
export ROSETTA_RATELIMIT ?= $(HOME)/.cache/rosetta/ratelimit-v1.4.1-0.20260122083618-3fb702589d36
# A minimal OpenTelemetry Collector (OTLP receiver, file exporter) for the
# tracing e2e tests, built once by hack/build-otelcol.sh into the same cache.
export ROSETTA_OTELCOL ?= $(HOME)/.cache/rosetta/otelcol-v0.161.0
# Prometheus (cmd/prometheus from github.com/prometheus/prometheus) for
# e2e/dubbo's metrics test, built once by hack/build-prometheus.sh.
export ROSETTA_PROMETHEUS ?= $(HOME)/.cache/rosetta/prometheus-v0.316.0

.PHONY: all build demo test deps lint unit e2e k8s-tools istiod ratelimit prometheus otelcol codegen verify-codegen bench fuzz generate clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# Dubbo and Thrift from the main module, tRPC with the real trpc-go from its
# own module.
demo:
	@echo "make demo: building rosettactl, with the controller, the proxy and the Dubbo, Thrift and Redis libraries it runs in-process (a few minutes the first time, seconds after)..."
	$(GO) build -o $(BIN)/rosettactl ./cmd/rosettactl
	$(BIN)/rosettactl demo
	@echo "make demo: building the tRPC demo (trpc-go, in e2e/trpc's own module)..."
	cd e2e/trpc && $(GO) build -o $(BIN)/trpcdemo ./cmd/trpcdemo
	$(BIN)/trpcdemo

deps:
	bash hack/deps.sh

# Everything: lint, the main module's tests (with the race detector), and the
# e2e modules against real peers. CI runs exactly this.
test: deps lint verify-codegen unit e2e

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	# rosettactl, the controller's folder mode and the proxy (with a reader
	# goroutine per connection) also build on developers' Macs.
	GOOS=darwin $(GO) vet ./...
	$(BIN)/staticcheck ./...

unit:
	$(GO) test -race -timeout 20m ./...
	# the same proxies with a reader goroutine per connection, as off Linux
	ROSETTA_EVENT_LOOPS=off $(GO) test -race -timeout 10m ./pkg/proxy/... ./pkg/upstream/... ./protocols/redis/...

k8s-tools:
	bash hack/build-k8s-tools.sh

istiod:
	bash hack/build-istiod.sh

ratelimit:
	bash hack/build-ratelimit.sh

otelcol:
	bash hack/build-otelcol.sh

prometheus:
	bash hack/build-prometheus.sh

# -count=1: these tests build and run the controller and proxy binaries from
# the main module's sources, which Go's test cache does not see as inputs,
# so a cached pass could hide a change that breaks them.
e2e: k8s-tools istiod ratelimit prometheus otelcol
	@set -e; for m in $(E2E_MODULES); do \
	  echo "== e2e module $$m"; \
	  (cd $$m && $(GO) vet ./... && $(GO) test -count=1 -timeout 30m ./...); \
	done

bench: build
	$(GO) run ./bench/loadtest -proxy $(BIN)/rosetta-proxy -protocols dubbo,thrift
	cd e2e/trpc && $(GO) run ./cmd/trpcload -proxy $(BIN)/rosetta-proxy
	$(GO) run ./bench/redisbench -proxy $(BIN)/rosetta-proxy

# Every fuzz target of the main module for FUZZTIME each (the seeds also
# run in `make test`). Only packages whose tests mention a Fuzz function are
# compiled to list their targets.
fuzz:
	@set -e; for pkg in $$($(GO) list -f '{{.ImportPath}} {{.Dir}}' ./... | \
	    while read -r p d; do if grep -qs '^func Fuzz' "$$d"/*_test.go; then echo "$$p"; fi; done); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

codegen:
	bash hack/update-codegen.sh

verify-codegen:
	bash hack/verify-codegen.sh

generate: deps
	PATH=$(BIN):$$PATH protoc -I api --go_out=. --go_opt=module=github.com/rosetta-mesh/rosetta \
	  api/rosetta/config/v1alpha1/metaprotocol.proto

clean:
	rm -rf $(BIN)
