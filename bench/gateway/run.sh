#!/usr/bin/env bash
# The gateway overhead benchmark (see bench/README.md): installs nginx from Debian when it
# is missing, builds the `writ` binary and the harness with the bench profile, then runs
# the harness on CPU 0 while the proxies under test run on CPU 1.
set -euo pipefail
cd "$(dirname "$0")/../.."

nginx_bin=$(command -v nginx || true)
if [ -z "$nginx_bin" ] && [ -x /usr/sbin/nginx ]; then
  nginx_bin=/usr/sbin/nginx
fi
if [ -z "$nginx_bin" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx
  nginx_bin=/usr/sbin/nginx
fi

cargo build --profile bench --locked -p writ --bin writ
cargo bench --locked -p writ-gateway --bench proxy --no-run

WRIT_BIN="$PWD/target/release/writ" NGINX_BIN="$nginx_bin" \
  taskset -c 0 cargo bench --locked -p writ-gateway --bench proxy
