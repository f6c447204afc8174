#!/usr/bin/env bash
# The whole test suite. Installs what the tests need (academy-py 1.0.0 in a
# virtual environment of its own), builds the library and the C examples,
# and runs every test against the real Python exchange and the embedded
# one. The exchanges and Python peers that tests start exit with them.
set -euo pipefail
cd "$(dirname "$0")/.."

# make_venv DIR CHECK PACKAGE...: a virtual environment in DIR (kept
# between runs) where the Python statement CHECK passes, made with pip
# from PyPI when it does not.
make_venv() {
    local dir="$1" check="$2"
    shift 2
    if ! "$dir/bin/python" -c "$check" 2>/dev/null; then
        echo "== installing $* into $dir"
        python3 -m venv "$dir"
        "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
        "$dir/bin/python" -c "$check"
    fi
}
is_academy='import academy, sys; sys.exit(academy.__version__ != "%s")'

venv="${ACADEMY_TEST_VENV:-$PWD/.venv-test}"
make_venv "$venv" "$(printf "$is_academy" 1.0.0)" academy-py==1.0.0
export ACADEMY_TEST_PYTHON="$venv/bin/python"

# Older servers for the compatibility tests. academy-py 0.5.0 imports
# `packaging` without declaring it, so it is installed beside it.
for old in 0.5.0 0.3.1; do
    short="${old%.*}"
    var="ACADEMY_TEST_VENV_${short/./_}"
    dir="${!var:-$PWD/.venv-test-$short}"
    make_venv "$dir" "import packaging; $(printf "$is_academy" "$old")" "academy-py==$old" packaging
    export "ACADEMY_TEST_PYTHON_${short/./_}=$dir/bin/python"
done

# Python peers that pass numpy arrays: academy-py 1.0.0 with numpy 1.26
# and with numpy 2.x, whose pickles name different modules.
for major in 1 2; do
    var="ACADEMY_TEST_VENV_NUMPY$major"
    dir="${!var:-$PWD/.venv-test-numpy$major}"
    if [[ $major == 1 ]]; then spec='numpy==1.26.*'; else spec='numpy>=2,<3'; fi
    make_venv "$dir" "import numpy; assert numpy.__version__.startswith('$major.'); $(printf "$is_academy" 1.0.0)" \
        academy-py==1.0.0 "$spec"
    export "ACADEMY_TEST_PYTHON_NUMPY$major=$dir/bin/python"
done

# Debian packages the tests use (scripts/test-packages.txt): each one is
# asked of dpkg by name, and all that are missing come in one apt-get.
source scripts/packages.sh
mapfile -t packages < <(test_packages .)
missing=()
for package in "${packages[@]}"; do
    is_installed "$package" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "== installing from Debian: ${missing[*]}"
    if [[ $(id -u) != 0 ]]; then
        echo "these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Files the tests need from those packages, checked as files: a command of
# the same name may come from elsewhere without them (openmpi-bin's mpicc
# without libopenmpi-dev's mpi.h).
need_file() { [[ -n "$2" && -e "$2" ]] || { echo "missing $1 after installing the packages" >&2; exit 1; }; }
need_file mpi.h "$(dpkg -L libopenmpi-dev | grep -m1 '/mpi\.h$')"
need_file libgfortran.so "$(gfortran -print-file-name=libgfortran.so)"
need_file redis-cli "$(dpkg -L redis-tools | grep -m1 '/bin/redis-cli$')"

# Go is a prerequisite, not a Debian package here: the machine's own Go
# (1.21 or newer) in PATH or /usr/local/go.
if [[ -x /usr/local/go/bin/go ]]; then
    export PATH="$PATH:/usr/local/go/bin"
fi
if ! go version >/dev/null 2>&1; then
    echo "Go 1.21 or newer is needed (in PATH or /usr/local/go/bin): the Go binding's tests run with it" >&2
    exit 1
fi

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
