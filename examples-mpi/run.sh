#!/usr/bin/env bash
# Runs the steered MPI simulation: an exchange, NP ranks of
# examples-mpi/build/steered_sim serving as agents, and the Python user
# examples-mpi/steer.py that steers them (after `make lib mpi`).
#
#   examples-mpi/run.sh [NP]          # this script starts academy-exchange and
#                                     # hands its URL to the ranks on their command line
#   examples-mpi/run.sh --spawn [NP]  # rank 0 starts the exchange inside the job
#                                     # (academy_exchange_spawn) and writes its URL to a file
#
# PYTHON: an interpreter with academy-py 1.0 (default python3).
# MPIRUN: the launcher (default: mpirun --oversubscribe; as root, OpenMPI's
# run-as-root switches are set).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=launcher
if [ "${1:-}" = --spawn ]; then mode=spawn; shift; fi
np="${1:-4}"
python="${PYTHON:-python3}"
release="${CARGO_TARGET_DIR:-target}/release"
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
read -r -a mpirun <<< "${MPIRUN:-mpirun --oversubscribe}"

tmp="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT

if [ "$mode" = launcher ]; then
    # The exchange runs beside the job; its first line names its URL.
    printf 'host = "127.0.0.1"\nport = 0\n' > "$tmp/exchange.toml"
    exec 3< <(exec "$release/academy-exchange" --config "$tmp/exchange.toml")
    pids+=($!)
    read -r line <&3
    url="${line##* }"
    echo "run: academy-exchange at $url"
    "${mpirun[@]}" -n "$np" examples-mpi/build/steered_sim "$url" &
    job=$!
else
    "${mpirun[@]}" -n "$np" examples-mpi/build/steered_sim --spawn "$tmp/url" &
    job=$!
    for _ in $(seq 600); do [ -s "$tmp/url" ] && break; sleep 0.1; done
    url="$(cat "$tmp/url")"
    echo "run: rank 0 started an exchange at $url"
fi
pids+=("$job")

"$python" examples-mpi/steer.py "$url" "$np"
rm -f "$tmp/url"   # --spawn: rank 0 may now stop its exchange
wait "$job"
echo "run: done"
