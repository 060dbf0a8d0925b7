# glb: build, test, benchmark and demo targets.
#
#   sudo make demo    the whole stack in network namespaces, against githubsim
#   sudo make test    every test; root tests run when root (CI requires them)

# sudo's secure_path may leave Go's directory off PATH.
GO        ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/glb-project/glb/internal/version.Version=$(VERSION)
BINARIES  := glb-director glb-redirect glb-proxy glbctl githubsim
TESTFLAGS ?= -count=1 -timeout 25m
FUZZTIME  ?= 10s

.PHONY: all build test generate bench demo deps clean fuzz vet check-generated

all: build

## deps: install the Debian packages the build, tests and demo need (idempotent)
deps:
	@./scripts/deps.sh

## build: compile every binary into ./bin
build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))

## generate: rebuild the committed BPF objects with Debian's clang
generate:
	$(GO) generate ./bpf/...

## vet: gofmt and go vet
vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

## check-generated: fail if the committed BPF objects are stale
check-generated:
	@GO=$(GO) ./scripts/check-generated.sh

## test: deps, vet, generated objects, then every test (root tests too, when run as root)
test: deps vet check-generated
	$(GO) test $(TESTFLAGS) ./...

## fuzz: run each fuzz target for FUZZTIME (default 10s)
fuzz:
	@GO=$(GO) ./scripts/fuzz.sh $(FUZZTIME)

## bench: every issue's benchmark, each beside its baseline (root for BPF and e2e)
bench: deps
	@echo "== forwarding table build (issue 2): AVX-512 vs scalar SipHash"
	$(GO) test -run '^$$' -bench 'Build256' -benchmem -count 3 ./director/table
	@echo "== XDP director vs a head-adjust + XDP_TX floor (issue 3)"
	$(GO) test -run '^$$' -bench 'DirectorLive' -benchtime 2000000x -count 3 ./director/dataplane
	$(GO) test -run '^$$' -bench 'ApplySwap' -benchtime 20x ./director/dataplane
	@echo "== glb-redirect vs a TC_ACT_OK program (issue 4)"
	$(GO) test -run '^$$' -bench 'Program' -benchtime 200000x -count 3 ./proxy/redirect
	@echo "== glb-proxy economy and cache-hit speed vs direct (issue 5)"
	$(GO) test -run '^$$' -bench 'Economy' -benchtime 1x -count 2 ./test/integration/proxy
	$(GO) test -run '^$$' -bench 'Speed' -benchtime 5000x -count 3 ./test/integration/proxy
	$(GO) test -run '^$$' -bench . -benchtime 1000x ./test/githubsim
	@echo "== health-check reply demultiplexer, Consul propagation (issue 6)"
	$(GO) test -run '^$$' -bench . -benchmem ./healthcheck ./consul
	@echo "== end to end through the VIP vs straight to one proxy (DESIGN.md §11)"
	$(GO) test -run '^$$' -bench 'EndToEnd' -benchtime 1x -count 2 -timeout 20m ./test/integration/e2e

## demo: the whole stack in network namespaces against githubsim
demo: deps build
	@./scripts/demo.sh

## clean: remove built binaries and test caches
clean:
	rm -rf $(BIN)
	$(GO) clean -testcache
