#!/usr/bin/env bash
# Runs Sesame's whole test suite on a fresh Debian machine: installs what is missing
# (Chromium, zbar, oathtool, tmux; Kannel and baresip for the real SMS and SIP gateway tests;
# PostgreSQL, started on loopback; npm packages), then formatting, lints, the Rust tests (core,
# store on both backends, HTTP, two nodes, CLI, gateways), the HTTP tests again on PostgreSQL,
# and the browser tests in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v zbarimg  >/dev/null 2>&1 || need+=(zbar-tools)
command -v oathtool >/dev/null 2>&1 || need+=(oathtool)
command -v tmux     >/dev/null 2>&1 || need+=(tmux)
# The SMS gateway (Kannel, with its fake SMS centre) and the SIP phone (baresip, with the
# prompt's speech synthesis) that the gateway tests run for real on loopback.
[ -x /usr/sbin/bearerbox ] || need+=(kannel)
[ -x /usr/lib/kannel/test/fakesmsc ] || need+=(kannel-extras)
command -v baresip  >/dev/null 2>&1 || need+=(baresip-core)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v sox      >/dev/null 2>&1 || need+=(sox)
# PostgreSQL: the store's conformance suite and the two-node tests run on it too.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# nginx in front of two nodes, with the packaged example configuration (browser test).
[ -x /usr/sbin/nginx ] || need+=(nginx)
command -v openssl  >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  # Kannel's, PostgreSQL's and nginx's packages would start system-wide servers on their
  # default ports: keep apt from starting services while installing (only if no policy is in
  # place already).
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ $made_policy = 1 ] && $sudo rm -f /usr/sbin/policy-rc.d
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the sesame binary without PostgreSQL (--no-default-features builds)"
cargo check -p sesame --no-default-features --locked

step "PostgreSQL for the tests (a throw-away server on loopback)"
pgdir=$(mktemp -d /tmp/sesame-test-pg.XXXXXX)
stop_postgres() { scripts/postgres.sh stop "$pgdir" >/dev/null 2>&1 || true; rm -rf "$pgdir"; }
trap stop_postgres EXIT
SESAME_TEST_DATABASE_URL=$(scripts/postgres.sh start "$pgdir")
export SESAME_TEST_DATABASE_URL
# Tests that need PostgreSQL fail, rather than skip, if it is missing.
export SESAME_REQUIRE_POSTGRES=1
echo "PostgreSQL at $SESAME_TEST_DATABASE_URL"

step "Rust tests (core, store on SQLite and PostgreSQL, HTTP server, two nodes, CLI)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

step "HTTP, app and two-node tests again, every server on PostgreSQL"
# The same pages, rules and races as above, with each test server on a PostgreSQL schema of
# its own instead of a SQLite file.
if cargo nextest --version >/dev/null 2>&1; then
  SESAME_TEST_BACKEND=postgres cargo nextest run -p sesame-testkit -p sesame-authenticator --locked --no-fail-fast
else
  SESAME_TEST_BACKEND=postgres cargo test -p sesame-testkit -p sesame-authenticator --locked --no-fail-fast
fi

step "browser test (headless Chromium)"
cargo build -p sesame -p sesame-authenticator --locked
(
  cd tests/browser
  npm ci --no-audit --no-fund --loglevel=error
  SESAME_BIN="$PWD/../../target/debug/sesame" \
    SESAME_AUTHENTICATOR_BIN="$PWD/../../target/debug/sesame-authenticator" node --test
)

step "all tests passed"
