#!/usr/bin/env bash
# Runs every Candor check and test. Safe on a fresh machine: installs what the tests need
# when it is missing, then runs formatting, lints and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "$@"; else sudo apt-get update -qq && sudo apt-get install -y -qq "$@"; fi
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust from https://rustup.rs first" >&2
  exit 1
fi
# rustfmt and clippy come with most toolchains; add them when missing.
if command -v rustup >/dev/null 2>&1; then
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
fi

# The log tamper test edits the SQLite file with the sqlite3 command-line tool.
if ! command -v sqlite3 >/dev/null 2>&1; then
  echo "installing sqlite3 (needed by the log tamper test)"
  apt_install sqlite3
fi

if [ -z "${CANDOR_TEST_DATABASE_URL:-}" ]; then
  echo "note: CANDOR_TEST_DATABASE_URL is not set; tests that need PostgreSQL will say they were skipped"
else
  # The PostgreSQL canary and swap tests use pg_dump and psql; the fault test starts a
  # throwaway cluster with PostgreSQL's initdb and pg_ctl.
  command -v pg_dump >/dev/null 2>&1 && command -v psql >/dev/null 2>&1 \
    || { echo "installing postgresql-client (pg_dump, psql)"; apt_install postgresql-client; }
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "installing postgresql (initdb, pg_ctl)"; apt_install postgresql; }
fi

# The PKCS#11 key provider is tested against SoftHSM2 (each test makes its own token directory).
if [ ! -e /usr/lib/softhsm/libsofthsm2.so ] || ! command -v softhsm2-util >/dev/null 2>&1; then
  echo "installing softhsm2 (tests of the HSM key provider)"
  apt_install softhsm2
fi
export CANDOR_HSM_TESTS=1

# The privacy pages are checked in Debian's Chromium, driven by playwright-core with axe-core
# (npm, versions pinned in tests/browser/package-lock.json; no browser download).
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (browser tests of the privacy pages)"
  apt_install chromium
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "installing nodejs and npm (browser tests)"
  apt_install nodejs npm
fi
if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/axe-core ]; then
  echo "installing the browser tests' npm packages"
  npm ci --prefix tests/browser --no-audit --no-fund
fi
export CANDOR_BROWSER_TESTS=1
# Staff sign-in is tested against a real OpenID Provider, oidc-provider from npm (pinned in
# tests/oidc/package-lock.json), started by tests/staff.rs on loopback.
if [ ! -d tests/oidc/node_modules/oidc-provider ]; then
  echo "installing the OpenID Provider for the staff sign-in tests"
  npm ci --prefix tests/oidc --no-audit --no-fund
fi
export CANDOR_OIDC_TESTS=1

# The OpenAPI document is checked against a real server by schemathesis (tests/schemathesis.rs),
# in a virtualenv of its own with every package pinned in tests/schemathesis/requirements.txt.
schemathesis_pin=$(grep '^schemathesis==' tests/schemathesis/requirements.txt | cut -d= -f3)
if ! target/schemathesis/bin/st --version 2>/dev/null | grep -q " ${schemathesis_pin}\$"; then
  echo "installing schemathesis ${schemathesis_pin} into target/schemathesis"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt_install python3 python3-venv
  fi
  rm -rf target/schemathesis
  python3 -m venv target/schemathesis
  target/schemathesis/bin/pip install --quiet --disable-pip-version-check -r tests/schemathesis/requirements.txt
fi
export CANDOR_SCHEMATHESIS_TESTS=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== no import cycle between the modules of any crate"
python3 scripts/module-cycles.py
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
# Every test binary runs even when one fails, so one failure never hides the others; the last
# line sums up every binary's result.
results=$(mktemp)
trap 'rm -f "$results"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$results" || status=$?
awk '/^test result: /{ for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$results"
exit "$status"
