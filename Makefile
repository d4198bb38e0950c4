# fmagent — see README.md. `make demo` and `make test` are the two entry points.
GO       ?= go
GOFLAGS  ?=
PKGS     := ./...
BIN      := bin

.PHONY: all build test demo simdemo bench fuzz lint clean ctest cbench bench-e2e bench-peers

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

# End to end on real agents on lo: down propagation, report to everywhere,
# the raw multicast baseline, detection and failover per profile, idle CPU
# and RSS, and netsim's cost model; tables on stdout, JSON under
# bench/results/ (docs/bench.md). Override with E2EFLAGS="-nodes 5 -runs 1".
E2EFLAGS ?=
bench-e2e:
	$(GO) run ./bench/cmd/e2e $(E2EFLAGS)

FUZZTIME ?= 20s
FUZZPKGS := ./wire/ ./api/
# Every fuzz target, FUZZTIME each. The seed corpora under testdata/fuzz run
# in `make test` anyway.
fuzz:
	@for p in $(FUZZPKGS); do \
		for t in $$($(GO) test -list 'Fuzz.*' $$p | grep ^Fuzz); do \
			echo "== $$p $$t"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$p || exit 1; done; done

lint:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf $(BIN)
	$(MAKE) -C shmem/c clean
