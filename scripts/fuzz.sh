#!/usr/bin/env bash
# Fuzzes the parsers for a bounded time each (default 60 s per target):
#   scripts/fuzz.sh [SECONDS]
# Needs the nightly toolchain and cargo-fuzz (installed here if missing).
# Inputs that crash are saved under fuzz/artifacts/; copy them into
# fuzz/regressions/<target>/ once fixed: tests/fuzz_corpus.rs replays them
# (and the seed corpus) in every test run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in sse_parser message options; do
    mkdir -p "fuzz/corpus/$target"
    work="$(mktemp -d)"
    cp -r "fuzz/corpus/$target/." "$work/"
    echo "== fuzzing $target for $seconds s"
    cargo +nightly fuzz run "$target" "$work" -- -max_total_time="$seconds" -max_len=4096
    rm -rf "$work"
done
