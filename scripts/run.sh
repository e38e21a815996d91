#!/usr/bin/env bash
# Dependencies, a build, then the tuning service: `parallax serve` on 127.0.0.1:50051 with
# its embedded SQLite database.
# Usage: scripts/run.sh   (BUILD_DIR, PARALLAX_ADDRESS and PARALLAX_DB override the defaults;
#                          without PARALLAX_DB, serve uses its own default database path)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
address=${PARALLAX_ADDRESS:-127.0.0.1:50051}
db_args=()
if [ -n "${PARALLAX_DB:-}" ]; then db_args=(--db "$PARALLAX_DB"); fi

scripts/install-deps.sh
cmake -S . -B "$build" -G Ninja
cmake --build "$build"

cli="$build/service/parallax"
# `serve` registers itself only in builds that have it (PARALLAX_BUILD_SERVICE=ON).
if grep -qE '^ +serve ' <<<"$("$cli" --help)"; then
  echo "run: parallax serve --listen $address ${db_args[*]}"
  exec "$cli" serve --listen "$address" "${db_args[@]}"
fi
echo "run: built $cli without 'parallax serve' (configure with -DPARALLAX_BUILD_SERVICE=ON)."
echo "run: try '$cli --help', e.g. '$cli space --mode decode --limit 5'."
