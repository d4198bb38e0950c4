# fmagent — see README.md. `make demo` and `make test` are the two entry points.
GO       ?= go
GOFLAGS  ?=
PKGS     := ./...
BIN      := bin

.PHONY: all build bins test test-deps check demo simdemo bench fuzz lint clean ctest cbench install deb bench-e2e bench-peers soak chaos attack

all: build

# The version stamped into the binaries (fmagent -version, fmctl version,
# fmagent_build_info): `git describe`, or VERSION=... from the caller.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0)
LDFLAGS  := -X github.com/fmagent/fmagent/version.Version=$(VERSION)

build: bins
	$(MAKE) -C shmem/c all

# Without cgo, as the package is built (make deb): nothing here needs it,
# and with it every thread of the agent comes from pthread_create, whose
# stack is an mmap (bench/cluster.go, BuildEnv, says why that matters).
bins:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# ---- install and package (docs/install.md) ----
# make install [PREFIX=/usr/local] [DESTDIR=] [SYSCONFDIR=/etc]
PREFIX     ?= /usr/local
DESTDIR    ?=
SYSCONFDIR ?= /etc
BINDIR     := $(PREFIX)/bin
UNITDIR    := $(PREFIX)/lib/systemd/system
MANDIR     := $(PREFIX)/share/man
DOCDIR     := $(PREFIX)/share/doc/fmagent
COMPDIR    := $(PREFIX)/share/bash-completion/completions
INCLUDEDIR := $(PREFIX)/include
LIBEXECDIR := $(PREFIX)/libexec/fmagent
CONFIG     := $(SYSCONFDIR)/fmagent/fmagent.toml

# The man pages, the example config and the example hook name the paths of
# the package (PREFIX=/usr, SYSCONFDIR=/etc); INSTALLED rewrites them for
# the PREFIX and SYSCONFDIR of this install, so every path they name is one
# this install wrote (dist/install_test.go checks it).
INSTALLED := sed -e 's|/usr/share/doc/fmagent|$(DOCDIR)|g' -e 's|/usr/libexec/fmagent|$(LIBEXECDIR)|g' \
	-e 's|/usr/include/|$(INCLUDEDIR)/|g' -e 's|/usr/share/bash-completion/completions|$(COMPDIR)|g' \
	-e 's|/etc/fmagent/|$(SYSCONFDIR)/fmagent/|g'

install: bins
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(COMPDIR) \
		$(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(SYSCONFDIR)/fmagent $(DESTDIR)$(LIBEXECDIR)
	install -m 0755 $(BIN)/fmagent $(BIN)/fmctl $(DESTDIR)$(BINDIR)/
	sed -e 's|/usr/local/bin/fmagent|$(BINDIR)/fmagent|g' \
		-e 's|/etc/fmagent/fmagent.toml|$(CONFIG)|g' dist/fmagent.service | $(INSTALLED) > $(DESTDIR)$(UNITDIR)/fmagent.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/fmagent.service
	$(INSTALLED) config/example.toml > $(BIN)/fmagent.toml.installed
	@# The configuration is the operator's: never overwrite one in place.
	@if [ -e $(DESTDIR)$(CONFIG) ]; then echo "install: keeping $(DESTDIR)$(CONFIG)"; \
		else install -m 0644 $(BIN)/fmagent.toml.installed $(DESTDIR)$(CONFIG); fi
	install -m 0644 $(BIN)/fmagent.toml.installed $(DESTDIR)$(DOCDIR)/examples/fmagent.toml
	install -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 dist/grafana-dashboard.json dist/prometheus-alerts.yml $(DESTDIR)$(DOCDIR)/examples/
	$(INSTALLED) dist/notify-logger.sh > $(DESTDIR)$(LIBEXECDIR)/notify-logger.sh
	chmod 0755 $(DESTDIR)$(LIBEXECDIR)/notify-logger.sh
	$(INSTALLED) dist/man/fmagent.8 | gzip -9n > $(DESTDIR)$(MANDIR)/man8/fmagent.8.gz
	$(INSTALLED) dist/man/fmctl.8 | gzip -9n > $(DESTDIR)$(MANDIR)/man8/fmctl.8.gz
	$(INSTALLED) dist/man/fmagent.toml.5 | gzip -9n > $(DESTDIR)$(MANDIR)/man5/fmagent.toml.5.gz
	chmod 0644 $(DESTDIR)$(MANDIR)/man8/fmagent.8.gz $(DESTDIR)$(MANDIR)/man8/fmctl.8.gz $(DESTDIR)$(MANDIR)/man5/fmagent.toml.5.gz
	install -m 0644 dist/completion/fmctl.bash $(DESTDIR)$(COMPDIR)/fmctl
	install -m 0644 shmem/fmshm.h $(DESTDIR)$(INCLUDEDIR)/fmshm.h

# make deb: a Debian package from the tree with dpkg-deb alone (no
# debhelper): PREFIX=/usr, the unit in /usr/lib/systemd/system, the config a
# conffile. DEBOUT is where the .deb goes.
DEB_VERSION := $(shell echo '$(VERSION)' | sed -e 's/^v//' -e 's/-/+/g' -e '/^[0-9]/!s/^/0.0~git/')
DEB_ARCH    := $(shell dpkg --print-architecture 2>/dev/null || $(GO) env GOARCH)
DEBOUT      ?= $(BIN)
DEBROOT     := $(BIN)/debroot
DEB         := $(DEBOUT)/fmagent_$(DEB_VERSION)_$(DEB_ARCH).deb

deb:
	@command -v dpkg-deb >/dev/null || { echo "make deb needs dpkg-deb (Debian's dpkg package)"; exit 1; }
	rm -rf $(DEBROOT)
	CGO_ENABLED=0 $(MAKE) --no-print-directory install DESTDIR=$(abspath $(DEBROOT)) PREFIX=/usr SYSCONFDIR=/etc
	install -d $(DEBROOT)/DEBIAN
	sed -e 's|@VERSION@|$(DEB_VERSION)|' -e 's|@ARCH@|$(DEB_ARCH)|' \
		-e "s|@SIZE@|$$(du -sk --exclude=DEBIAN $(DEBROOT) | cut -f1)|" dist/deb/control > $(DEBROOT)/DEBIAN/control
	install -m 0644 dist/deb/conffiles $(DEBROOT)/DEBIAN/conffiles
	install -m 0755 dist/deb/postinst dist/deb/postrm $(DEBROOT)/DEBIAN/
	cd $(DEBROOT) && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums
	mkdir -p $(DEBOUT)
	dpkg-deb --root-owner-group -Zxz --build $(DEBROOT) $(DEB)
	@echo "built $(DEB)"

test: lint test-deps
	@# scripts/gotest.sh: the suite's failures printed again at its end.
	GO=$(GO) scripts/gotest.sh $(BIN)/test.log -race -count=1 -timeout 12m $(PKGS)
	@# Allocation budgets again without the race detector, which adds its own.
	$(GO) test -count=1 -run 'Alloc' $(PKGS)
	$(MAKE) -C shmem/c test

ctest:
	$(MAKE) -C shmem/c test

# What the tests need beyond Go, gcc and iproute2, from Debian when missing:
# tmux (fmctl top's test), python3-yaml (dist/alerting_test.go parses the Prometheus rules) and clang
# (shmem/c builds the header as C++ with clang++ too; without it that one
# build is skipped with a message, g++ always runs).
APT_GET = DEBIAN_FRONTEND=noninteractive apt-get -y -qq --no-install-recommends
test-deps:
	@/usr/bin/python3 -c 'import yaml' 2>/dev/null || python3 -c 'import yaml' 2>/dev/null || { \
		echo "test-deps: installing python3-yaml"; \
		{ apt-get update -qq && $(APT_GET) install python3-yaml; } >/dev/null; }
	@command -v clang++ >/dev/null || { \
		echo "test-deps: installing clang"; \
		{ apt-get update -qq && $(APT_GET) install clang; } >/dev/null 2>&1 || \
		echo "test-deps: clang could not be installed; shmem/c will skip its clang++ build"; }
	@# tmux: fmctl top is tested in a real terminal pane (cmd/fmctl).
	@command -v tmux >/dev/null || { \
		echo "test-deps: installing tmux"; \
		{ apt-get update -qq && $(APT_GET) install tmux; } >/dev/null; }

# Three real agents on loopback: election, an alarm, kill -9, measured detection.
demo: build
	./scripts/demo.sh

# The same story on the deterministic simulator, with partitions and healing.
simdemo:
	$(GO) run ./netsim/cmd/netsim-demo

# Real agents in network namespaces under a seeded random mix of faults
# while clients write; at the end every acknowledged write is checked on
# every node (needs root and iproute2). A 25 s version runs in make test.
CHAOS_DURATION ?= 10m
CHAOS_NODES    ?= 5
CHAOS_SEED     ?= 0
chaos:
	$(GO) test -count=1 -v -timeout 0 -run '^TestChaosNetns$$' ./netsim/netns/ \
		-chaos.duration=$(CHAOS_DURATION) -chaos.nodes=$(CHAOS_NODES) -chaos.seed=$(CHAOS_SEED)

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

# Side by side, in one run: fmagent's detection (5 agents, each profile; a
# process stopped, at the heartbeats' bound, and a process killed, seen by
# the exit watch),
# hashicorp/memberlist (its own module, bench/peers/memberlist) and keepalived
# VRRP in network namespaces this target creates and removes (installed from
# Debian's packages if missing; the row is skipped with a message if that
# fails). JSON under bench/results/ (docs/bench.md).
PEERSFLAGS ?=
bench-peers:
	@# A row that fails (a sample not seen everywhere) does not stop the others.
	-$(GO) run ./bench/cmd/e2e -name peers-fmagent -nodes 5 -samples 0 -failovers 0 -exit-failovers 0 -idle 0 -costmodel "" -runs 1 -kills 10 -exits 10 $(PEERSFLAGS)
	@# memberlist's hog window runs soak's own CPU burners, as fmagent's soak does.
	$(GO) build -o $(BIN)/fmsoak ./soak/cmd/soak
	-cd bench/peers/memberlist && $(GO) run . -nodes 5 -kills 5 -hog-soak 60s -burner "$(abspath $(BIN))/fmsoak -burn" -out ../../results
	@command -v keepalived >/dev/null 2>&1 || { \
		echo "keepalived missing: apt-get install keepalived"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends keepalived >/dev/null; } \
			|| echo "keepalived could not be installed: its row is skipped"; }
	@if command -v keepalived >/dev/null 2>&1; then $(GO) build -o $(BIN)/fmbench-vrrp ./bench/cmd/vrrp && \
		{ $(BIN)/fmbench-vrrp -routers 3 -kills 10 -out bench/results || test $$? -eq 3; }; \
		else echo "keepalived: not installed, row skipped"; fi

# The false-down soak of issue 13 (soak/): five real agents on loopback,
# every core kept busy by CPU burners the harness starts and stops, 60 s per
# profile, then the same under a report flood. Figures, never pass/fail.
SOAK_PROFILES ?= 10ms,20ms,50ms
SOAK_HOG      ?= 60s
# machine_stall is the control measured beside the agents: a C thread at
# SCHED_FIFO 50 pinned to each CPU (soak/vcpustall), whose lateness no agent
# can beat.
soak: build
	@mkdir -p soak/results
	$(CC) -O2 -Wall -pthread -o $(BIN)/vcpustall soak/vcpustall/vcpustall.c
	$(GO) run ./soak/cmd/soak -agent $(BIN)/fmagent -stall-probe $(BIN)/vcpustall -profiles $(SOAK_PROFILES) -hog $(SOAK_HOG) -json soak/results/soak.json
	$(GO) run ./soak/cmd/soak -agent $(BIN)/fmagent -stall-probe $(BIN)/vcpustall -profiles $(SOAK_PROFILES) -hog $(SOAK_HOG) -idle -1s -flood 2 -json soak/results/soak-flood.json
	$(GO) run ./soak/cmd/soak -agent $(BIN)/fmagent -stall-probe $(BIN)/vcpustall -profiles 20ms -hog $(SOAK_HOG) -idle -1s -listers 1 -list-entities 800 -json soak/results/soak-listers.json

FUZZTIME ?= 20s
FUZZPKGS := ./wire/ ./api/ ./config/ ./shmem/
# Every fuzz target, FUZZTIME each, then the C reader against random
# segments for FUZZTIME (shmem/c/test_hostile.c under ASan+UBSan). The seed
# corpora under testdata/fuzz run in `make test` anyway. -timeout 0: go
# test's default 10-minute timeout would end a FUZZTIME=10m run early.
fuzz:
	@for p in $(FUZZPKGS); do \
		for t in $$($(GO) test -list 'Fuzz.*' $$p | grep ^Fuzz); do \
			echo "== $$p $$t"; \
			$(GO) test -timeout 0 -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$p || exit 1; done; done
	@echo "== shmem/c test_hostile (C reader, random segments)"
	@$(MAKE) -C shmem/c fuzz HOSTILE_ROUNDS=$(FUZZTIME)

# The attack test at 20× its make-test size (packets and local clients),
# verbose: per attack the rejection counters, the RSS and fds.
ATTACK_SCALE ?= 20
attack:
	$(GO) test -count=1 -v -run '^TestAttacks$$' -timeout 20m ./agent/ -attack-scale $(ATTACK_SCALE)

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

# The inner loop: no race detector, -short, 50 chaos seeds. Its target is
# 30 s on an idle 2-core machine; the longest parts are dist's package build
# (TestDebInstall) and the real-namespace tests (netsim/netns), which do
# less under -short but still run.
check:
	FMAGENT_SEEDS=50 $(GO) test -short -count=1 $(PKGS)

clean:
	rm -rf $(BIN) $(TOOLS)
	$(MAKE) -C shmem/c clean
