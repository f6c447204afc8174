#!/usr/bin/env bash
# The main job, after `make examples`: a C user calls a C agent over an
# Academy exchange. Without a URL it needs no Python: first in one process
# on the embedded exchange (examples-c/demo.c), then across processes
# (calculator_agent.c serves, call_agent.c calls) through the
# `academy-exchange` server; then one thread with an epoll loop serves an
# agent and keeps 1,000 actions to it in flight (examples-c/event_loop.c).
# With a URL, all run against that exchange.
set -euo pipefail
cd "$(dirname "$0")/.."
build=examples-c/build
url="${1:-${ACADEMY_EXCHANGE_URL:-}}"

echo "== one process: a user calls an agent served from a thread"
"$build/demo" ${url:+"$url"}

echo "== two processes: calculator_agent serves, call_agent calls"
server=""
if [ -z "$url" ]; then
    config="$(mktemp)"
    printf 'host = "127.0.0.1"\nport = 0\n' > "$config"
    exec 3< <(exec "${CARGO_TARGET_DIR:-target}/release/academy-exchange" --config "$config")
    server=$!
    read -r line <&3
    url="${line##* }"
    echo "started academy-exchange at $url"
fi
"$build/calculator_agent" "$url" > /dev/null &
agent=$!
"$build/call_agent" "$url"
wait "$agent"

echo "== one thread, one epoll loop: serves an agent and keeps 1,000 actions to it in flight"
"$build/event_loop" "$url"
if [ -n "$server" ]; then
    kill -TERM "$server"
    wait "$server" 2>/dev/null || true
    rm -f "$config"
fi
