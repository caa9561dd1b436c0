#!/bin/sh
# The console's browser tests (test/console/) drive Debian's Chromium at
# /usr/bin/chromium through playwright-core (which downloads no browser of its own).
# Installs it with apt-get when it is missing; fails loudly when it cannot, so the
# tests are never skipped silently.
set -eu
CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: no Chromium at $CHROMIUM and no apt-get to install it; install chromium and rerun" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
echo "ensure-chromium: installing chromium (apt-get)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
if [ ! -x "$CHROMIUM" ]; then
  echo "ensure-chromium: chromium was installed but $CHROMIUM is missing" >&2
  exit 1
fi
