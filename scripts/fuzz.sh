#!/usr/bin/env bash
# Fuzzes each target for a bounded time (default 60 s per target) and keeps
# what it finds:
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Targets: sse_parser message options (parsers), http_answer (the client's
# HTTP/1.1 answer reader), pipeline (background sends fed arbitrary server
# bytes), server_request (the exchange's routes and bodies), peer_frames
# (what hybrid peers send to a client's TCP port), pickle (pickled action
# arguments and results, decoded and re-encoded).
#
# Needs the nightly toolchain and cargo-fuzz (installed here if missing).
# New inputs that reach new code are added to fuzz/corpus/<target>/ (then
# minimized with `cargo fuzz cmin`); inputs that crash are copied to
# fuzz/regressions/<target>/. tests/fuzz_corpus.rs replays both in every
# test run, so a crash found here fails the tests until it is fixed.
# Prints, per target, the executions run and the crashes found.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(sse_parser message options http_answer pipeline server_request peer_frames pickle)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
summary=()
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    artifacts="fuzz/artifacts/$target"
    mkdir -p "$corpus" "$artifacts" "fuzz/regressions/$target"
    log="$(mktemp)"
    echo "== fuzzing $target for $seconds s"
    status=0
    # One job: the machine is shared. -rss_limit_mb bounds memory.
    cargo +nightly fuzz run --release "$target" "$corpus" -- \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
        -timeout=30 -print_final_stats=1 -artifact_prefix="$artifacts/" \
        2>&1 | tee "$log" | grep -E '^#[0-9]+.*(NEW|pulse|DONE)|ERROR|panicked|SUMMARY' || status=$?
    execs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
    crashes=0
    for crash in "$artifacts"/*; do
        [ -e "$crash" ] || continue
        cp "$crash" "fuzz/regressions/$target/"
        crashes=$((crashes + 1))
    done
    cargo +nightly fuzz cmin --release "$target" "$corpus" >/dev/null 2>&1 || true
    summary+=("$target: $execs executions, $crashes crashing inputs, $(ls "$corpus" | wc -l) in the corpus")
    rm -f "$log"
done
echo
printf '%s\n' "${summary[@]}"
