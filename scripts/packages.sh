# Sourced by scripts/test.sh and scripts/bare-check.sh: the one reading of
# scripts/test-packages.txt, and the one question put to dpkg.

# test_packages DIR: the package names listed in DIR/scripts/test-packages.txt.
test_packages() {
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$1/scripts/test-packages.txt" | awk '{print $1}'
}

# is_installed PACKAGE: whether dpkg has PACKAGE installed (by name, never
# by a command that another package may bring).
is_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}
