# Bazaar: run "make help" for the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/bazaar

.PHONY: help up down run build test test/race lint verify

help: ## list targets
	@grep -E '^[a-zA-Z/_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

up: ## start PostgreSQL and Redis when none is reachable
	@deploy/local/up.sh

down: ## stop the PostgreSQL and Redis that "make up" started
	@deploy/local/down.sh

build: ## build bin/bazaar
	$(GO) build -o $(BIN) ./cmd/bazaar

run: up build ## start everything: API, relay, workers, scheduler, asynqmon on :8080
	$(BIN) dev

test: up ## vet, lint and the race-enabled test suite
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
