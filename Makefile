# Bazaar: run "make help" for the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
BIN := bin/bazaar

# The linter is pinned and built from the Go module proxy into bin/, so every
# machine and CI lint with the same rules.
GOLANGCI_VERSION := v2.15.0
GOLANGCI := bin/golangci-lint-$(GOLANGCI_VERSION)
# govulncheck likewise; it reads the Go vulnerability database at GOVULNDB.
GOVULNCHECK_VERSION := v1.9.0
GOVULNCHECK := bin/govulncheck-$(GOVULNCHECK_VERSION)
GOVULNDB ?= https://vuln.go.dev

# stripe-mock, Stripe's own mock server, is pinned and built into bin/ the
# same way; the workers' Stripe tests start it on a free port.
STRIPE_MOCK_VERSION := v0.203.0
export STRIPE_MOCK := $(CURDIR)/bin/stripe-mock-$(STRIPE_MOCK_VERSION)

# Tests reach PostgreSQL at TEST_DATABASE_URL (see sql/store/storetest) and
# start a redis-server of their own, or use TEST_REDIS_URL when it is set in
# the environment (see stream/redistest); "make test" brings those up.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

BENCHTIME ?= 1s

# What "bazaar version" and the bazaar_build_info metric report. Without
# git, or outside "make build", the binary falls back to Go's VCS stamp.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_TIME ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildTime=$(BUILD_TIME)

.PHONY: help up down db/reset migrate build run tools test test/race test/deploy lint verify vuln bench bench/relay bench/compare bench/fairness lint/spec generate verify/generate

help: ## list the targets
	@grep -E '^[a-zA-Z/_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

up: ## start PostgreSQL and Redis unless they answer at DATABASE_URL and REDIS_URL
	@deploy/local/up.sh

down: ## stop the PostgreSQL and Redis that "make up" started
	@deploy/local/down.sh

build: ## build bin/bazaar, stamped with VERSION, COMMIT and BUILD_TIME (bazaar version)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/bazaar

migrate: up build ## apply the database migrations
	$(BIN) migrate up

db/reset: up build ## revert every migration of DATABASE_URL's database and apply them again (data is lost)
	$(BIN) migrate -steps 0 down
	$(BIN) migrate up

run: up build ## start every role in one process (API, relay, workers, scheduler, asynqmon) on :8080
	$(BIN) dev

tools: ## install what the tests use when it is missing: promtool, Chromium, pdftoppm, redis-server/-cli/-sentinel/-benchmark, pgbouncer (Debian packages)
	@deploy/local/need.sh promtool prometheus
	@deploy/local/need.sh chromium chromium
	@deploy/local/need.sh pdftoppm poppler-utils
	@# Redis Cluster and Sentinel tests (stream/redistest): redis-server, redis-cli, redis-sentinel
	@deploy/local/need.sh redis-server redis-server
	@deploy/local/need.sh redis-cli redis-tools
	@deploy/local/need.sh redis-sentinel redis-sentinel
	@deploy/local/need.sh redis-benchmark redis-tools
	@deploy/local/need.sh pgbouncer pgbouncer

test: tools ## the CI suite: tools and services up, vet, lint, gofmt and go.mod checks, govulncheck, deploy checks, go test -race
	@DATABASE_URL='$(TEST_DATABASE_URL)' REDIS_URL='$(TEST_REDIS_URL)' deploy/local/up.sh
	$(GO) vet ./...
	@$(MAKE) --no-print-directory lint verify vuln test/deploy
	@$(MAKE) --no-print-directory lint/spec
	$(GO) test -race -count=1 ./...

test/race: tools ## go test -race with tools and services up (no vet or lint)
	@DATABASE_URL='$(TEST_DATABASE_URL)' REDIS_URL='$(TEST_REDIS_URL)' deploy/local/up.sh
	$(GO) test -race -count=1 ./...

test/deploy: ## promtool over the Prometheus config, alert rules and their tests (manifest checks: go test ./deploy)
	@deploy/local/need.sh promtool prometheus
	promtool check config --syntax-only deploy/prometheus/prometheus.yml
	promtool check rules deploy/prometheus/rules.yml
	promtool test rules deploy/prometheus/rules_test.yml

lint: $(GOLANGCI) ## golangci-lint (pinned) with .golangci.yaml
	$(GOLANGCI) run ./...

$(GOLANGCI):
	@echo "building golangci-lint $(GOLANGCI_VERSION) into bin/ (once)"
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin/.golangci $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)
	mv bin/.golangci/golangci-lint $@
	rmdir bin/.golangci

test test/race: $(STRIPE_MOCK)

$(STRIPE_MOCK):
	@echo "building stripe-mock $(STRIPE_MOCK_VERSION) into bin/ (once)"
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin/.stripe-mock $(GO) install github.com/stripe/stripe-mock@$(STRIPE_MOCK_VERSION)
	mv bin/.stripe-mock/stripe-mock $@
	rmdir bin/.stripe-mock

verify: ## fail when a Go file is not gofmt-formatted or go.mod and go.sum are not tidy
	@files=$$(find . -path ./.data -prune -o -path ./bin -prune -o -path ./node_modules -prune -o -name '*.go' -print | xargs gofmt -l); \
	if [[ -n $$files ]]; then echo "not gofmt-formatted (run gofmt -w):"; echo "$$files"; exit 1; fi
	@$(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy (run go mod tidy)"; exit 1; }
	@$(MAKE) --no-print-directory verify/generate

# The Go client is generated from api/openapi.yaml by the pinned oapi-codegen
# named in api/client/doc.go's go:generate line (go run fetches it from the
# module proxy once). The check regenerates a copy in a temporary directory,
# so a stale client fails without the working tree changing.
generate: ## regenerate the Go client api/client from api/openapi.yaml
	$(GO) generate ./api/client

verify/generate: ## fail when api/client/client.gen.go is not what "make generate" makes of api/openapi.yaml
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	mkdir -p "$$tmp/api/client"; \
	cp api/openapi.yaml "$$tmp/api/"; cp api/client/doc.go api/client/oapi-codegen.yaml "$$tmp/api/client/"; \
	(cd "$$tmp/api/client" && $(GO) generate doc.go); \
	diff -u api/client/client.gen.go "$$tmp/api/client/client.gen.go" >"$$tmp/diff" || \
		{ head -40 "$$tmp/diff"; echo "api/client is not current with api/openapi.yaml (run make generate)"; exit 1; }

# The database is a web service; where it cannot be reached (a network
# without it) the check says so in one line and passes, rather than fail
# every run for a reason no change here can fix.
vuln: ## govulncheck (pinned) over the module; skipped with a note when GOVULNDB cannot be reached
	@case '$(GOVULNDB)' in \
	file://*) ;; \
	*) host=$$(sed -E 's#^[a-z]+://([^/:]+).*#\1#' <<<'$(GOVULNDB)'); \
		if ! timeout 10 bash -c 'exec 3<>"/dev/tcp/$$0/443"' "$$host" 2>/dev/null; then \
			echo "vuln: skipped: the Go vulnerability database $(GOVULNDB) cannot be reached from this machine"; exit 0; \
		fi ;; \
	esac; \
	$(MAKE) --no-print-directory $(GOVULNCHECK) && $(GOVULNCHECK) -db '$(GOVULNDB)' ./...

$(GOVULNCHECK):
	@echo "building govulncheck $(GOVULNCHECK_VERSION) into bin/ (once)"
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin/.govulncheck $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)
	mv bin/.govulncheck/govulncheck $@
	rmdir bin/.govulncheck

bench: ## run the benchmarks once each (BENCHTIME=1s by default)
	@deploy/local/need.sh redis-benchmark redis-tools
	@DATABASE_URL='$(TEST_DATABASE_URL)' REDIS_URL='$(TEST_REDIS_URL)' deploy/local/up.sh
	$(GO) test -run '^$$' -bench . -benchmem -benchtime=$(BENCHTIME) -count=1 ./...

bench/relay: ## the relay draining 100k events, beside redis-benchmark XADD (pipelined 32 and not) on the same server
	@deploy/local/need.sh redis-benchmark redis-tools
	@DATABASE_URL='$(TEST_DATABASE_URL)' REDIS_URL='$(TEST_REDIS_URL)' deploy/local/up.sh
	$(GO) test -run '^$$' -bench '^BenchmarkRelayDrain$$' -benchtime 1x -count=1 ./stream/

# Each benchmark beside the machine's own limit (pgbench, redis-benchmark,
# a bare asynq server) in one go, as one table (docs/benchmarks.md). The Go
# benchmarks start their own databases and redis-server; the program starts
# one more redis-server for redis-benchmark. Over 10 minutes on a loaded
# 2-core machine; the fairness row's flood is the longest (-flood N).
bench/compare: ## every speed benchmark beside its baseline, one table of figures and ratios (pgbench, redis-benchmark)
	@deploy/local/need.sh pgbench postgresql-client
	@deploy/local/need.sh redis-benchmark redis-tools
	@deploy/local/need.sh redis-server redis-server
	@DATABASE_URL='$(TEST_DATABASE_URL)' REDIS_URL='$(TEST_REDIS_URL)' deploy/local/up.sh
	TEST_DATABASE_URL='$(TEST_DATABASE_URL)' $(GO) run ./cmd/benchcompare

# Fairness by seller alone: one seller's flood of BENCH_FLOOD orders against
# 20 small sellers, with fairness on and off (docs/benchmarks.md); also a row
# of "make bench/compare".
BENCH_FLOOD ?= 10000
bench/fairness: ## the flood-against-a-trickle benchmark, fairness on and off (BENCH_FLOOD=10000)
	@DATABASE_URL='$(TEST_DATABASE_URL)' REDIS_URL='$(TEST_REDIS_URL)' deploy/local/up.sh
	BAZAAR_BENCH_FLOOD=$(BENCH_FLOOD) $(GO) test -run '^$$' -bench 'BenchmarkFairnessFlood' -benchtime=1x -count=1 -timeout 2h ./workers/

# The spec linters are npm packages pinned in deploy/package.json and its
# lock file; npm ci installs exactly those into deploy/node_modules, again only
# when the lock file changes. Telemetry is off (Redocly by its variable, the
# AsyncAPI CLI by deploy/asyncapi-analytics.json): CI reaches no other hosts.
SPEC_TOOLS := deploy/node_modules/.installed

lint/spec: $(SPEC_TOOLS) ## @redocly/cli lint over api/openapi.yaml, @asyncapi/cli validate over api/asyncapi.yaml
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true deploy/node_modules/.bin/redocly lint --config api/redocly.yaml api/openapi.yaml
	SUPPRESS_NO_CONFIG_WARNING=1 ASYNCAPI_METRICS_CONFIG_PATH=deploy/asyncapi-analytics.json deploy/node_modules/.bin/asyncapi validate api/asyncapi.yaml --fail-severity=warn

$(SPEC_TOOLS): deploy/package.json deploy/package-lock.json
	@deploy/local/need.sh npm npm
	cd deploy && npm ci --no-audit --no-fund --ignore-scripts
	touch $@
