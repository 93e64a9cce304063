#!/usr/bin/env bash
# npm `install` hook: builds the native addons (binding.gyp) with node-gyp, offline, against the headers
# of the running Node: native/uffd (userfaultfd, for the Fault Tracker), native/datapath (AES-256-GCM
# and SHA-256 in place, from Node's own OpenSSL) and native/bitmap (the blackout's page-bitmap passes).
# It never fails the install: without them constmig runs with the Access Tracker, node:crypto and the
# JavaScript bitmap passes, and src/native/*.ts report why an addon is missing.
# CONSTMIG_SKIP_NATIVE=1 skips the build.
set -u
cd "$(dirname "$0")/.."

say() { echo "constmig: $*" >&2; }

if [[ "${CONSTMIG_SKIP_NATIVE:-}" == 1 ]]; then
  say "native addons not built (CONSTMIG_SKIP_NATIVE=1); the Access Tracker, node:crypto and JavaScript bitmap passes will be used"
  exit 0
fi
if [[ "$(uname -s)" != Linux ]]; then
  say "native addons not built (needs Linux); the Access Tracker, node:crypto and JavaScript bitmap passes will be used"
  exit 0
fi

# node-gyp: the one npm runs scripts with, else one on PATH.
if [[ -n "${npm_config_node_gyp:-}" && -f "${npm_config_node_gyp}" ]]; then
  gyp=(node "$npm_config_node_gyp")
elif command -v node-gyp >/dev/null; then
  gyp=(node-gyp)
else
  say "native addons not built (node-gyp not found); the Access Tracker, node:crypto and JavaScript bitmap passes will be used"
  exit 0
fi

# Without a nodedir node-gyp downloads headers; use the installed ones (e.g. /usr/include/node) so the
# build works offline.
args=(rebuild)
if [[ -z "${npm_config_nodedir:-}" ]]; then
  prefix="$(dirname "$(dirname "$(command -v node)")")"
  [[ -f "$prefix/include/node/node.h" ]] && args+=("--nodedir=$prefix")
fi

log="$(mktemp)"
if "${gyp[@]}" "${args[@]}" >"$log" 2>&1; then
  mkdir -p build && mv "$log" build/native-build.log
  say "native addons built (build/Release/constmig_uffd.node, constmig_datapath.node, constmig_bitmap.node)"
else
  tail -n 15 "$log" >&2
  mkdir -p build && mv "$log" build/native-build.log
  say "native addons did not build (log: build/native-build.log); the Access Tracker, node:crypto and JavaScript bitmap passes will be used"
fi
exit 0
