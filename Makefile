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

.PHONY: all build test generate bench demo deps clean fuzz vet

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

## test: deps, vet, then every test (root tests too, when run as root)
test: deps vet
	$(GO) test $(TESTFLAGS) ./...

## fuzz: run each fuzz target for FUZZTIME (default 10s)
fuzz:
	@./scripts/fuzz.sh $(FUZZTIME)

## bench: every Go benchmark, one package at a time
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

## demo: the whole stack in network namespaces against githubsim
demo: deps build
	@./scripts/demo.sh

## clean: remove built binaries and test caches
clean:
	rm -rf $(BIN)
	$(GO) clean -testcache
