#!/usr/bin/env bash
# Install the system programs modelviz uses, when they are missing and we may (root + apt-get);
# otherwise say how to get them. Never fails the build: commands that need a missing program
# explain themselves, and the tests that need one skip with a reason.
#   scripts/system-deps.sh graphviz [chromium]
set -u

need=()
for wanted in "$@"; do
  case "$wanted" in
    graphviz) command -v dot >/dev/null 2>&1 || need+=(graphviz) ;;
    chromium) { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } || need+=(chromium) ;;
    *) echo "system-deps: unknown package $wanted" >&2; exit 2 ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing ${need[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    exit 0
  fi
  echo "system-deps: apt-get could not install ${need[*]}" >&2
fi
for package in "${need[@]}"; do
  case "$package" in
    graphviz) echo "system-deps: Graphviz's 'dot' is missing. Install it with 'sudo apt-get install graphviz' (Debian/Ubuntu), 'brew install graphviz' (macOS) or from https://graphviz.org/download/. Until then, write graphs as .dot files." >&2 ;;
    chromium) echo "system-deps: Chromium is missing; browser tests will be skipped. Install it with 'sudo apt-get install chromium'." >&2 ;;
  esac
done
exit 0
