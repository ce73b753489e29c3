# sipdata: `make run` (Kamailio + sipdata on demo data), `make test` (everything CI runs).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SIPDATA_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/sipdata
export SIPDATA_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: setup run test unit integration e2e faults faults-deps image lint typecheck services kamailio bench clean
KAMAILIO_RUN := /run/kamailio

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# PostgreSQL and Redis run on this machine kind before a session starts; this
# only checks, and starts them the machine's way if a developer stopped one.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /tmp
	@pg_isready -h 127.0.0.1 -p 5432 && redis-cli -h 127.0.0.1 -p 6379 ping

# Kamailio 5.6, SIPp and the http_async_client module built from Debian's
# source of the installed Kamailio (idempotent; seconds when already done).
kamailio:
	@bash kamailio/install.sh

# Database `sipdata`, schema, demo data, sipdata with its warmer in the
# background, Kamailio on 127.0.0.1:5060 in the foreground (Ctrl-C stops both).
run: setup services kamailio
	$(BIN)/sipdata migrate
	$(BIN)/sipdata demo-data
	$(BIN)/sipdata warm
	@mkdir -p $(KAMAILIO_RUN)
	@admin=$$($(BIN)/sipdata api-key create --name demo-admin | \
		$(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["secret"])'); \
	SIPDATA_LOG_FORMAT=console $(BIN)/sipdata serve > sipdata.log 2>&1 & pid=$$!; \
	trap "kill $$pid 2>/dev/null" EXIT INT TERM; \
	for i in $$(seq 50); do curl -sf http://127.0.0.1:8480/ready >/dev/null && break; sleep 0.2; done; \
	echo "sipdata on http://127.0.0.1:8480 (log: sipdata.log); Kamailio on udp:127.0.0.1:5060"; \
	echo "Place a routed call (bravo, the cheapest carrier, answers) from another shell:"; \
	echo "  sipp -sf tests/e2e/scenarios/uas_answer.xml -i 127.0.0.102 -p 5060 -m 1 &"; \
	echo "  sipp -sf tests/e2e/scenarios/uac_call.xml -i 127.0.0.10 -s 12125551234 127.0.0.1:5060 -m 1 -d 2000"; \
	echo "(Kamailio runs without OPTIONS probes of the carriers here: they are SIPp scenarios; docs/kamailio.md.)"; \
	echo "Admin API key (platform, every scope; docs/admin-api.md), shown once:"; \
	echo "  curl -H 'Authorization: Bearer $$admin' http://127.0.0.1:8480/v1/admin/trunks"; \
	kamailio -f kamailio/kamailio.cfg -DD -E -m 512 -x tlsf -A WITHOUT_GATEWAY_PROBES

lint: setup
	$(BIN)/ruff check sipdata tests bench
	$(BIN)/ruff format --check sipdata tests bench

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit

integration: setup services
	$(BIN)/pytest tests/integration

e2e: setup services kamailio
	$(BIN)/pytest tests/e2e

# iptables for the network-fault tests (tests/netfaults: namespaces, real drops).
faults-deps:
	@command -v iptables-legacy >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables >/dev/null)

# Faults on a real network between namespaces (also part of `make test`).
faults: setup services kamailio faults-deps
	$(BIN)/pytest tests/netfaults

# The sipdata image on a base made from Debian's packages, with podman (no registry
# is reachable here; the Dockerfile's public default base stays python:3.11-slim).
# tests/integration/test_image.py runs the built image's sipdata.
image: setup
	@bash deploy/image.sh

test: setup services kamailio faults-deps image lint typecheck
	$(BIN)/pytest

# Every benchmark (wrk, SIPp through Kamailio in three configurations, a
# 1,000,000-prefix deck import), about 15 minutes; results in bench/results/
# and docs/benchmarks.md explains them. BENCH_ARGS="--quick" checks the harness.
bench: setup services kamailio
	@command -v wrk >/dev/null && [ -x /usr/bin/time ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk time >/dev/null)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
