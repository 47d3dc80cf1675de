#!/usr/bin/env bash
# Exec benchmark: caddyws's exec upstream (websocket_tunnel { exec ... }) in
# the built Caddy and Debian's websocketd, side by side in one run on
# loopback, each running the same programs (sh printing a line, cat).
# Prints a markdown table of medians, ratios and targets on stdout; progress
# and per-cell figures go to stderr.
#
#   bench/run-exec.sh                   # 3 runs, 2 s per cell
#   RUNS=5 DUR=3s bench/run-exec.sh
#   bench/run-exec.sh -idle 500         # extra flags go to the tool
#
# Needs websocketd (apt-get install websocketd) and Go.
set -euo pipefail
cd "$(dirname "$0")/.."

for bin in websocketd go; do
	command -v "$bin" >/dev/null || { echo "run-exec.sh: $bin is missing (apt-get install websocketd)" >&2; exit 1; }
done

out=$(mktemp -d "${TMPDIR:-/tmp}/exec-bench-bin.XXXXXX")
trap 'rm -rf "$out"' EXIT
echo "building cmd/caddy and the load tool..." >&2
go build -o "$out/caddy" ./cmd/caddy
go build -o "$out/exec-bench" ./bench/exec

# Hundreds of idle sessions, each with its program's pipes.
ulimit -n 65536 2>/dev/null || true

nice_cmd=()
if nice -n -10 true 2>/dev/null; then
	nice_cmd=(nice -n -10)
fi

"${nice_cmd[@]}" "$out/exec-bench" -caddy "$out/caddy" \
	-runs "${RUNS:-3}" -dur "${DUR:-2s}" -json "${JSON:-/dev/null}" "$@"
