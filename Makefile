# sipdata: `make run` (service + warmer on demo data), `make test` (everything CI runs).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SIPDATA_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/sipdata
export SIPDATA_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: setup run test unit integration lint typecheck services clean

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

# Database `sipdata`, schema, demo data, then the service with its warmer (Ctrl-C stops).
run: setup services
	$(BIN)/sipdata migrate
	$(BIN)/sipdata demo-data
	$(BIN)/sipdata warm
	@echo "sipdata on http://127.0.0.1:8480 - try the curl examples in README.md"
	SIPDATA_LOG_FORMAT=console $(BIN)/sipdata serve

lint: setup
	$(BIN)/ruff check sipdata tests bench
	$(BIN)/ruff format --check sipdata tests bench

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit

integration: setup services
	$(BIN)/pytest tests/integration

test: setup services lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
