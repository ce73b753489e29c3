#!/usr/bin/env bash
# Redis commands one idle `sipdata serve` process sends in 10 s (warmer off), against a
# private redis-server. Usage: bench/idle_commands.sh [CHECKOUT]  (default: this one).
# Compare two checkouts in the same session; the count is exact (INFO commandstats).
set -e
python="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python"
port=16399; http=18481
redis-server --port $port --save "" --appendonly no --daemonize yes --logfile /tmp/idle-redis.log >/dev/null
sleep 0.5
(cd "${1:-.}" && SIPDATA_REDIS_URL=redis://127.0.0.1:$port/0 SIPDATA_HTTP_PORT=$http SIPDATA_WARMER_ENABLED=false SIPDATA_LOG_LEVEL=warning PYTHONPATH=. "$python" -m sipdata serve >/tmp/idle-serve.log 2>&1 &)
sleep 4
a=$(redis-cli -p $port info commandstats | awk -F'[=,:]' '/^cmdstat/{s+=$3} END{print s}')
sleep 10
b=$(redis-cli -p $port info commandstats | awk -F'[=,:]' '/^cmdstat/{s+=$3} END{print s}')
echo "${1:-.}: $((b-a-1)) commands in 10 s idle"
pkill -f "sipdata serve"; redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true
