# fmagent — see README.md. `make demo` and `make test` are the two entry points.
GO       ?= go
GOFLAGS  ?=
PKGS     := ./...
BIN      := bin

.PHONY: all build test check demo simdemo bench fuzz lint clean ctest cbench bench-e2e bench-peers

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

# Side by side, in one run: fmagent's detection (5 agents, each profile),
# hashicorp/memberlist (its own module, bench/peers/memberlist) and keepalived
# VRRP in network namespaces this target creates and removes (installed from
# Debian's packages if missing; the row is skipped with a message if that
# fails). JSON under bench/results/ (docs/bench.md).
PEERSFLAGS ?=
bench-peers:
	@# A row that fails (a sample not seen everywhere) does not stop the others.
	-$(GO) run ./bench/cmd/e2e -name peers-fmagent -nodes 5 -samples 0 -failovers 0 -idle 0 -costmodel "" -runs 1 -kills 10 $(PEERSFLAGS)
	-cd bench/peers/memberlist && $(GO) run . -nodes 5 -kills 5 -out ../../results
	@command -v keepalived >/dev/null 2>&1 || { \
		echo "keepalived missing: apt-get install keepalived"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends keepalived >/dev/null; } \
			|| echo "keepalived could not be installed: its row is skipped"; }
	@if command -v keepalived >/dev/null 2>&1; then $(GO) build -o $(BIN)/fmbench-vrrp ./bench/cmd/vrrp && \
		{ $(BIN)/fmbench-vrrp -routers 3 -kills 10 -out bench/results || test $$? -eq 3; }; \
		else echo "keepalived: not installed, row skipped"; fi

FUZZTIME ?= 20s
FUZZPKGS := ./wire/ ./api/
# Every fuzz target, FUZZTIME each. The seed corpora under testdata/fuzz run
# in `make test` anyway.
fuzz:
	@for p in $(FUZZPKGS); do \
		for t in $$($(GO) test -list 'Fuzz.*' $$p | grep ^Fuzz); do \
			echo "== $$p $$t"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$p || exit 1; done; done

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
