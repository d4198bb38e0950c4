# fmagent — see README.md. `make demo` and `make test` are the two entry points.
GO       ?= go
GOFLAGS  ?=
PKGS     := ./...
BIN      := bin

.PHONY: all build test check demo simdemo bench fuzz lint clean ctest cbench attack

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...
	$(MAKE) -C shmem/c all

test: lint
	$(GO) test -race -count=1 -timeout 12m $(PKGS)
	@# Allocation budgets again without the race detector, which adds its own.
	$(GO) test -count=1 -run 'Alloc' $(PKGS)
	$(MAKE) -C shmem/c test

ctest:
	$(MAKE) -C shmem/c test

# Three real agents on loopback: election, an alarm, kill -9, measured detection.
demo: build
	./scripts/demo.sh

# The same story on the deterministic simulator, with partitions and healing.
simdemo:
	$(GO) run ./netsim/cmd/netsim-demo

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./wire/ ./shmem/ ./ring/ ./agent/...
	$(MAKE) -C shmem/c bench

FUZZTIME ?= 20s
FUZZPKGS := ./wire/ ./api/ ./config/ ./shmem/
# Every fuzz target, FUZZTIME each. The seed corpora under testdata/fuzz run
# in `make test` anyway.
fuzz:
	@for p in $(FUZZPKGS); do \
		for t in $$($(GO) test -list 'Fuzz.*' $$p | grep ^Fuzz); do \
			echo "== $$p $$t"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$p || exit 1; done; done

# The attack test at 20× its make-test size (packets and local clients),
# verbose: per attack the rejection counters, the RSS and fds.
ATTACK_SCALE ?= 20
attack:
	$(GO) test -count=1 -v -run '^TestAttacks$$' -timeout 20m ./agent/ -attack-scale $(ATTACK_SCALE) 2>&1 | grep -v 'level=INFO'

# staticcheck at a pinned version, installed from the Go module proxy into
# .tools/ the first time (the version is in the file name, so a change of
# pin installs the new one).
STATICCHECK_VERSION := v0.8.2
TOOLS       := $(CURDIR)/.tools
STATICCHECK := $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)

$(STATICCHECK):
	@mkdir -p $(TOOLS)/tmp
	GOBIN=$(TOOLS)/tmp GOFLAGS=-mod=mod $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS)/tmp/staticcheck $@

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)
	$(GO) run ./internal/cmd/builtinshadow .

# The inner loop: no race detector, -short, 50 chaos seeds; about 30 s.
check:
	FMAGENT_SEEDS=50 $(GO) test -short -count=1 $(PKGS)

clean:
	rm -rf $(BIN) $(TOOLS)
	$(MAKE) -C shmem/c clean
