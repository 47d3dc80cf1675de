#!/usr/bin/env bash
# Tunnel benchmark: direct TCP, a socat relay (nodelay both legs), Debian's
# websockify and our websocket_tunnel in the built Caddy, side by side in one
# run on loopback. Prints a markdown table of medians (and ratios) on stdout;
# progress and per-cell figures go to stderr.
#
#   bench/run-tunnel.sh                 # 3 runs, 3 s per throughput cell
#   RUNS=5 DUR=5s bench/run-tunnel.sh
#   bench/run-tunnel.sh -only socat,websockify   # extra flags go to the tool
#
# Needs socat and websockify (apt-get install socat websockify) and Go.
set -euo pipefail
cd "$(dirname "$0")/.."

for bin in socat websockify go; do
	command -v "$bin" >/dev/null || { echo "run-tunnel.sh: $bin is missing (apt-get install socat websockify)" >&2; exit 1; }
done

out=$(mktemp -d /tmp/tunnel-bench-bin.XXXXXX)
trap 'rm -rf "$out"' EXIT
echo "building cmd/caddy and the load tool..." >&2
go build -o "$out/caddy" ./cmd/caddy
go build -o "$out/tunnel-bench" ./bench/tunnel

# Thousands of short connections in the connections/s cell.
ulimit -n 65536 2>/dev/null || true

# The machine may be shared (CI runners, other builds): run the whole
# benchmark (load generator, echo upstream and every proxy alike) at a
# higher priority when allowed, so outside load disturbs it less. (No exec:
# the EXIT trap removes the built binaries.)
nice_cmd=()
if nice -n -10 true 2>/dev/null; then
	nice_cmd=(nice -n -10)
fi

"${nice_cmd[@]}" "$out/tunnel-bench" compare -caddy "$out/caddy" \
	-runs "${RUNS:-3}" -dur "${DUR:-3s}" -json "${JSON:-/dev/null}" "$@"
