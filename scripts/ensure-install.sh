#!/bin/sh
# Installs dependencies when they are missing or older than the lock file, so the
# README's two commands work on a fresh clone.
set -e
cd "$(dirname "$0")/.."
if [ ! -x node_modules/.bin/node ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "installing dependencies (npm install)..." >&2
  npm install --no-audit --no-fund >&2
fi
