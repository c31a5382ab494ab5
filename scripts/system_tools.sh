#!/usr/bin/env bash
# The system tools the test suite runs, installed with apt when one is
# missing: redis-server and redis-cli (every real-Redis test, the local
# cluster, Sentinel, the benchmark's capacity section), openssl (the TLS
# test's certificate), wrk (the benchmark's preferred loader, which
# tests/test_bench_loaders.py holds against the h11 client) and valgrind
# (the benchmark counts each script's instructions with callgrind).
# Everything else comes from PyPI into the venv.
set -euo pipefail

declare -A package_of=(
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [openssl]=openssl
  [wrk]=wrk
  [valgrind]=valgrind
)
missing=()
for tool in redis-server redis-cli openssl wrk valgrind; do
  command -v "$tool" >/dev/null || missing+=("${package_of[$tool]}")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "==> system tools present: redis-server, redis-cli, openssl, wrk, valgrind"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "missing: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "==> installing with apt: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
