#!/usr/bin/env bash
# Installs the Debian packages glucover needs, or says exactly what to install.
# Used by `make demo` and `make test`; safe to run again (installs only what is missing).
set -euo pipefail

need=()
have_pg=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | head -n1 || true)
[ -n "$have_pg" ] || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
# Chinese in the AGP report's PDF and in the browser tests' screenshots.
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
if [ "${1:-}" = "--test" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  # The AGP report test renders its PDF (pdftoppm) and reads its text (pdftotext).
  command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
fi

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts packaged services on install; glucover runs its own on free ports.
  for svc in mosquitto postgresql; do
    (service "$svc" stop || true) >/dev/null 2>&1
  done
else
  echo "glucover needs these Debian packages: ${need[*]}" >&2
  echo "install them as root:  apt-get install -y ${need[*]}" >&2
  exit 1
fi
