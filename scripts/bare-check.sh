#!/usr/bin/env bash
# Proves the README's two commands from nothing: strips this machine of
# what `make test` installs (the Debian packages of
# scripts/test-packages.txt, the test venvs, the caches the tests fill),
# clones the repository afresh (no target/), and runs `make run` and then
# `make test` there, timing each. Run it as root before a submission that
# touches the test command. It changes the machine: the packages come back
# only through `make test` itself.
#
#   scripts/bare-check.sh [REPO]   # REPO: what to clone (default: this checkout's HEAD)
#
# Kept: openssl, which ca-certificates needs (cargo and pip reach their
# registries through it) and which every machine of this kind has.
set -euo pipefail
repo="$(cd "${1:-$(dirname "$0")/..}" && pwd)"
keep=(openssl)
log_dir="${BARE_CHECK_LOG_DIR:-/tmp/bare-check.$$}"
mkdir -p "$log_dir"

source "$repo/scripts/packages.sh"
mapfile -t packages < <(test_packages "$repo")
purge=()
for package in "${packages[@]}"; do
    [[ " ${keep[*]} " == *" $package "* ]] && continue
    is_installed "$package" && purge+=("$package")
done
echo "== purging: ${purge[*]:-(nothing installed)}"
if ((${#purge[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${purge[@]}" >"$log_dir/purge.log"
fi
DEBIAN_FRONTEND=noninteractive apt-get autoremove --purge -y -qq >>"$log_dir/purge.log"
for package in "${purge[@]}"; do
    if is_installed "$package"; then
        echo "still installed after the purge: $package" >&2
        exit 1
    fi
done

echo "== removing the caches the tests fill (pip, Go's build cache)"
rm -rf "$HOME/.cache/pip" "$HOME/.cache/go-build"

clone="$(mktemp -d /tmp/bare-clone.XXXX)"
git clone --quiet "$repo" "$clone"
cd "$clone"
# No venv or test setting of this machine's may leak in.
unset ACADEMY_TEST_VENV ACADEMY_TEST_VENV_0_5 ACADEMY_TEST_VENV_0_3 ACADEMY_TEST_VENV_NUMPY1 ACADEMY_TEST_VENV_NUMPY2 \
    ACADEMY_TEST_PYTHON ACADEMY_TEST_PYTHON_0_5 ACADEMY_TEST_PYTHON_0_3 ACADEMY_TEST_PYTHON_NUMPY1 ACADEMY_TEST_PYTHON_NUMPY2 \
    CARGO_TARGET_DIR
echo "== $(git log -1 --format='%h %s') in $clone"

run_timed() {
    local name="$1"
    shift
    local start=$SECONDS
    set +e
    "$@" >"$log_dir/$name.log" 2>&1
    local status=$?
    set -e
    echo "== $name: exit $status after $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s (log: $log_dir/$name.log)"
    return $status
}
run_timed make-run make run
tail -3 "$log_dir/make-run.log"
run_timed make-test make test || { tail -30 "$log_dir/make-test.log"; exit 1; }
tail -1 "$log_dir/make-test.log"
