# walex — see README.md.
GO        ?= go
PG_VERSIONS ?= 14 15 16 17 18
FUZZTIME  ?= 30s
# The integration modules, each its own Go module (go.work ties them to the
# root for development). Their tests run with GOWORK=off so that each
# module's go.mod and go.sum are proven to stand alone.
MODULES   := destinations/nats destinations/webhook plugins/prometheus plugins/otel examples/fanout

.PHONY: all demo test vet download test-matrix bench bench-quick fuzz

all: test

## demo: run examples/quickstart against a throwaway PostgreSQL (or $$DATABASE_URL)
demo:
	$(GO) run ./examples/quickstart

## test: vet, then every test of every module (integration tests start their own PostgreSQL)
test: vet
	$(GO) test -race -count=1 -timeout 15m ./...
	@set -e; for m in $(MODULES); do \
		echo "==> $$m"; \
		(cd $$m && GOWORK=off $(GO) test -race -count=1 -timeout 10m ./...); \
	done

vet:
	$(GO) vet ./...
	@set -e; for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) vet ./...); done

## download: every module's dependencies
download:
	$(GO) mod download
	@set -e; for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) mod download); done

## test-matrix: the suite on each PostgreSQL major version (fetched with npm)
test-matrix:
	@set -e; for v in $(PG_VERSIONS); do \
		echo "==> PostgreSQL $$v"; \
		WALEX_PG_VERSION=$$v $(GO) test -count=1 -timeout 15m ./... ; \
	done

## bench: walex against COPY on a snapshot, and a raw pglogrepl reader on W1-W3 and commit->handler
##        latency (internal/cmd/walexbench, throwaway PostgreSQL; see BENCHMARKS.md),
##        then the decoder's Go benchmarks on one core, then walex into NATS JetStream on W1 and W2
##        (destinations/nats/internal/natsbench). Extra flags: BENCHFLAGS='-runs 5', NATSBENCHFLAGS='-runs 1'
bench:
	$(GO) run ./internal/cmd/walexbench $(BENCHFLAGS)
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 ./decoder/...
	cd destinations/nats && GOWORK=off $(GO) run ./internal/natsbench $(NATSBENCHFLAGS)

## bench-quick: a smoke run of the same, 5% of the rows, one run per reader
bench-quick:
	$(GO) run ./internal/cmd/walexbench -scale 0.05 -runs 1 $(BENCHFLAGS)
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 -benchtime 0.2s ./decoder/...
	cd destinations/nats && GOWORK=off $(GO) run ./internal/natsbench -scale 0.05 -runs 1 $(NATSBENCHFLAGS)

## fuzz: each fuzz target for FUZZTIME
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "==> $$pkg $$t"; \
			$(GO) test -run "^$$" -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
		done; \
	done
