# walex — see README.md.
GO        ?= go
PG_VERSIONS ?= 14 15 16 17 18
FUZZTIME  ?= 30s
BENCHTIME ?= 1x

.PHONY: all demo test vet test-matrix bench fuzz

all: test

## demo: run examples/quickstart against a throwaway PostgreSQL (or $$DATABASE_URL)
demo:
	$(GO) run ./examples/quickstart

## test: vet, then every test (integration tests start their own PostgreSQL)
test: vet
	$(GO) test -race -count=1 -timeout 15m ./...

vet:
	$(GO) vet ./...

## test-matrix: the suite on each PostgreSQL major version (fetched with npm)
test-matrix:
	@set -e; for v in $(PG_VERSIONS); do \
		echo "==> PostgreSQL $$v"; \
		WALEX_PG_VERSION=$$v $(GO) test -count=1 -timeout 15m ./... ; \
	done

## bench: benchmarks (decoder over recorded streams; end-to-end against a throwaway PostgreSQL)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

## fuzz: each fuzz target for FUZZTIME
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "==> $$pkg $$t"; \
			$(GO) test -run "^$$" -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
		done; \
	done
