# Bazaar: run "make help" for the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
BIN := bin/bazaar

# The linter is pinned and built from the Go module proxy into bin/, so every
# machine and CI lint with the same rules.
GOLANGCI_VERSION := v2.15.0
GOLANGCI := bin/golangci-lint-$(GOLANGCI_VERSION)

# Tests reach PostgreSQL and Redis at TEST_DATABASE_URL and TEST_REDIS_URL
# (see sql/store/storetest and stream/redistest); "make test" brings those up.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

BENCHTIME ?= 1s

.PHONY: help up down db/reset migrate build run test test/race test/deploy lint verify bench lint/spec

help: ## list the targets
	@grep -E '^[a-zA-Z/_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

up: ## start PostgreSQL and Redis unless they answer at DATABASE_URL and REDIS_URL
	@deploy/local/up.sh

down: ## stop the PostgreSQL and Redis that "make up" started
	@deploy/local/down.sh

build: ## build bin/bazaar
	$(GO) build -o $(BIN) ./cmd/bazaar

migrate: up build ## apply the database migrations
	$(BIN) migrate up

db/reset: up build ## revert every migration of DATABASE_URL's database and apply them again (data is lost)
	$(BIN) migrate -steps 0 down
	$(BIN) migrate up

run: up build ## start every role in one process (API, relay, workers, scheduler, asynqmon) on :8080
	$(BIN) dev

test: ## the CI suite: services up, vet, lint, deploy checks, go test -race
	@DATABASE_URL='$(TEST_DATABASE_URL)' REDIS_URL='$(TEST_REDIS_URL)' deploy/local/up.sh
	$(GO) vet ./...
	@$(MAKE) --no-print-directory lint verify test/deploy
	@$(MAKE) --no-print-directory lint/spec
	$(GO) test -race -count=1 ./...

test/race: ## go test -race with services up (no vet or lint)
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

verify: ## fail when a Go file is not gofmt-formatted
	@files=$$(find . -path ./.data -prune -o -path ./bin -prune -o -path ./node_modules -prune -o -name '*.go' -print | xargs gofmt -l); \
	if [[ -n $$files ]]; then echo "not gofmt-formatted (run gofmt -w):"; echo "$$files"; exit 1; fi

bench: ## run the benchmarks once each (BENCHTIME=1s by default)
	@DATABASE_URL='$(TEST_DATABASE_URL)' REDIS_URL='$(TEST_REDIS_URL)' deploy/local/up.sh
	$(GO) test -run '^$$' -bench . -benchmem -benchtime=$(BENCHTIME) -count=1 ./...

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
