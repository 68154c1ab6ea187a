#!/usr/bin/env bash
# The quickstart with staff sign-in through the bundled test identity provider: a real OpenID
# Provider (`oidc-provider` from the npm registry, tests/oidc/op.mjs without its test-only
# routes) on loopback, and `candor quickstart` signing staff in at /console through it.
#
#   ./scripts/quickstart-idp.sh [quickstart options, e.g. --dir D]
#
# People at the test provider (any password): alice (group support-team -> support_agent),
# dora (privacy-team -> privacy_team), bob (sales: no role, refused), carol (two roles: refused).
# Needs Node.js 18 or newer with npm; installs the provider's packages into tests/oidc once.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "the test identity provider needs Node.js and npm (Debian/Ubuntu: apt-get install nodejs npm)" >&2
  exit 1
fi
if [ ! -d tests/oidc/node_modules/oidc-provider ]; then
  echo "installing the test identity provider's npm packages into tests/oidc/node_modules" >&2
  npm ci --prefix tests/oidc --no-audit --no-fund >&2
fi

# A client secret for this run only, shared by the provider and Candor (never on a command line
# Candor reads: it goes through the environment).
secret="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
out="$(mktemp)"
node tests/oidc/op.mjs "$secret" --demo >"$out" 2>&1 &
provider=$!
trap 'kill "$provider" 2>/dev/null || true; rm -f "$out"' EXIT INT TERM

issuer=""
for _ in $(seq 1 600); do
  issuer="$(sed -n 's/^issuer: //p' "$out")"
  [ -n "$issuer" ] && break
  if ! kill -0 "$provider" 2>/dev/null; then
    echo "the test identity provider did not start:" >&2
    cat "$out" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$issuer" ]; then
  echo "the test identity provider did not say where it listens within a minute" >&2
  exit 1
fi
echo "test identity provider: $issuer (people: alice = support_agent, dora = privacy_team, bob = no role; any password)"

CANDOR_OIDC_CLIENT_SECRET="$secret" cargo run --quiet --locked -- quickstart \
  --staff-issuer "$issuer" \
  --staff-role support-team=support_agent \
  --staff-role privacy-team=privacy_team \
  "$@"
