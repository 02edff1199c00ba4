#!/usr/bin/env bash
# Installs the system packages Stockfolio needs beside its Python ones: bubblewrap (`bwrap`),
# the sandbox every user shell and git command runs in. As root with apt-get it installs what
# is missing; otherwise it says exactly what to run and fails.
set -euo pipefail

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v prlimit >/dev/null 2>&1 || missing+=(util-linux)

if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} with apt-get"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  fi
  exit 0
fi
cat >&2 <<MSG
Stockfolio runs every user shell and git command in a bubblewrap sandbox, and ${missing[*]}
is not installed. Install it, then run make again:
  Debian/Ubuntu:  sudo apt-get install ${missing[*]}
  Fedora/RHEL:    sudo dnf install ${missing[*]}
(For development only, TERMINAL_SANDBOX=off runs shells without a sandbox.)
MSG
exit 1
