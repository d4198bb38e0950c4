# fmagent — see README.md. `make demo` and `make test` are the two entry points.
GO       ?= go
GOFLAGS  ?=
PKGS     := ./...
BIN      := bin

.PHONY: all build test demo bench fuzz lint clean ctest cbench

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...
	$(MAKE) -C shmem/c all

test: lint
	$(GO) test -race -count=1 -timeout 12m $(PKGS)
	$(MAKE) -C shmem/c test

ctest:
	$(MAKE) -C shmem/c test

demo: build
	$(GO) run ./netsim/cmd/netsim-demo

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./wire/ ./shmem/ ./ring/ ./agent/...
	$(MAKE) -C shmem/c bench

FUZZTIME ?= 20s
fuzz:
	@for t in $$($(GO) test -list 'Fuzz.*' ./wire/ | grep ^Fuzz); do \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./wire/ || exit 1; done

lint:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf $(BIN)
	$(MAKE) -C shmem/c clean
