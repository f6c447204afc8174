#!/usr/bin/env bash
# The whole test suite. Installs what the tests need (academy-py 1.0.0 in a
# virtual environment of its own), builds the library and the C examples,
# and runs every test against the real Python exchange and the embedded
# one. The exchanges and Python peers that tests start exit with them.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${ACADEMY_TEST_VENV:-$PWD/.venv-test}"
if ! "$venv/bin/python" -c 'import academy, sys; sys.exit(academy.__version__ != "1.0.0")' 2>/dev/null; then
    echo "== installing academy-py==1.0.0 into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check academy-py==1.0.0
fi
export ACADEMY_TEST_PYTHON="$venv/bin/python"

# Older servers for the compatibility tests. academy-py 0.5.0 imports
# `packaging` without declaring it, so it is installed beside it.
for old in 0.5.0 0.3.1; do
    short="${old%.*}"
    var="ACADEMY_TEST_VENV_${short/./_}"
    dir="${!var:-$PWD/.venv-test-$short}"
    if ! "$dir/bin/python" -c "import academy, packaging, sys; sys.exit(academy.__version__ != '$old')" 2>/dev/null; then
        echo "== installing academy-py==$old into $dir"
        python3 -m venv "$dir"
        "$dir/bin/pip" install --quiet --disable-pip-version-check "academy-py==$old" packaging
    fi
    export "ACADEMY_TEST_PYTHON_${short/./_}=$dir/bin/python"
done

# Tools the tests use from Debian's packages: command:package.
for need in valgrind:valgrind openssl:openssl pkg-config:pkg-config cmake:cmake \
    redis-server:redis-server gfortran:gfortran mpirun:openmpi-bin mpicc:libopenmpi-dev \
    doxygen:doxygen; do
    tool="${need%%:*}" package="${need#*:}"
    if ! command -v "$tool" >/dev/null; then
        echo "== installing $package (for $tool)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
    fi
done

# Stop anything a test left behind, whatever happens.
trap 'pkill -P $$ 2>/dev/null || true' EXIT

echo "== building the library and the C examples"
make --no-print-directory examples

echo "== building the tests"
cargo test --release --all-targets --no-run

# The two longest suites (the packaging builds of tests/dist.rs, the 200
# comebacks of tests/comeback.rs) each run beside the others: all of them
# wait on processes and the network more than they use the CPU, and every
# test picks free ports of its own. Their output follows the others'.
long=(dist comeback)
rest=(--lib --bins --examples)
for file in tests/*.rs; do
    name="$(basename "$file" .rs)"
    [[ " ${long[*]} " == *" $name "* ]] || rest+=(--test "$name")
done
log="$(mktemp)" long_dir="$(mktemp -d)"
for name in "${long[@]}"; do
    (
        set +e
        cargo test --release --no-fail-fast --test "$name" >"$long_dir/$name" 2>&1
        echo "exit $?" >>"$long_dir/$name"
    ) &
done
echo "== cargo test (${long[*]} run beside the others; their output comes last)"
set +e
cargo test --release --no-fail-fast "${rest[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
wait
set -e
for name in "${long[@]}"; do
    echo "== cargo test --test $name"
    tee -a "$log" <"$long_dir/$name"
    long_status=$(tail -1 "$long_dir/$name" | awk '{print $2}')
    [[ "$long_status" == 0 ]] || status="$long_status"
done
rm -rf "$long_dir"

echo "== the bad-input test under valgrind (no memory errors, no definite leaks)"
bad_input=$(cargo test --release --test bad_input --no-run 2>&1 | grep -o 'target/release/deps/bad_input-[a-f0-9]*' | head -1)
valgrind --quiet --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite --error-exitcode=42 \
    "$bad_input" --test-threads=1 2>&1

# One closing line for the whole run.
passed=$(grep '^test result:' "$log" | grep -o '[0-9]* passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep '^test result:' "$log" | grep -o '[0-9]* failed' | awk '{s+=$1} END {print s+0}')
rm -f "$log"
echo "tests: $passed passed, $failed failed"
if [[ "$status" != 0 ]]; then
    echo "cargo test failed (exit $status)"
    exit 1
fi
