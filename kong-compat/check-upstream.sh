#!/usr/bin/env bash
# kong-compat/check-upstream.sh KONG_SOURCE_DIR
#
# Runs Kong's own open-source bundled plugins, unmodified, from a Kong 3.x source checkout on gw
# (correlation-id, request-termination, cors, ip-restriction, request-transformer,
# response-transformer, request-size-limiting, rate-limiting with the local policy, key-auth, and
# also acl, bot-detection, pre-function, post-function) and checks with real requests that each
# does its job: spec/04-kong-compat/05-upstream_spec.lua with
# KONG_SOURCE_DIR set. Nothing of Kong is copied into this repository: gw reads the plugins from
# the checkout (gw.kong_plugins_path).
#
#   git clone https://github.com/Kong/kong /tmp/kong && kong-compat/check-upstream.sh /tmp/kong
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 KONG_SOURCE_DIR   (a Kong 3.x source checkout)" >&2
  exit 2
fi
src=$(cd "$1" 2>/dev/null && pwd) || { echo "$0: no such directory: $1" >&2; exit 2; }
for p in correlation-id request-termination cors ip-restriction request-transformer \
         response-transformer request-size-limiting rate-limiting key-auth acl bot-detection \
         pre-function post-function; do
  if [ ! -f "$src/kong/plugins/$p/handler.lua" ]; then
    echo "$0: $src is not a Kong source checkout: kong/plugins/$p/handler.lua is missing" >&2
    exit 2
  fi
done
if [ -f "$src/kong/meta.lua" ]; then
  major=$(sed -n 's/^ *major *= *\([0-9]*\).*/\1/p' "$src/kong/meta.lua" | head -1)
  minor=$(sed -n 's/^ *minor *= *\([0-9]*\).*/\1/p' "$src/kong/meta.lua" | head -1)
  echo "Kong ${major:-?}.${minor:-?} plugins from $src"
  if [ -n "$major" ] && [ "$major" != 3 ]; then
    echo "$0: warning: Kong $major.x; gw's PDK follows Kong 3.x" >&2
  fi
fi

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ -x bin/gw ] || make build >/dev/null
KONG_SOURCE_DIR="$src" exec bin/gw test spec/04-kong-compat/05-upstream_spec.lua
