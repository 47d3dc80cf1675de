#!/usr/bin/env bash
# websocket_push benchmark: builds cmd/caddy and the load tool, then for each
# cell starts a fresh Caddy with bench/push.Caddyfile (so every cell has a
# clean memory baseline), runs bench/push against it on loopback, and stops
# Caddy. Prints a markdown table of medians on stdout; progress and one
# line of figures per run go to stderr.
#
#   bench/run-push.sh                  # every cell once
#   RUNS=3 bench/run-push.sh           # medians of 3
#   CELLS="n1k-user n10k-anchor" bench/run-push.sh
#   JSON=/tmp/push.jsonl bench/run-push.sh   # keep the raw results
#
# Needs Go and about 20 000 file descriptors (raised here with ulimit).
# Every run is bounded: the tool stops itself (-timeout), and so does
# timeout(1) around it.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-1}
CELLS=${CELLS:-"n1k-user n10k-user n10k-anchor n10k-user-500 n10k-event n10k-broadcast"}
HTTP_PORT=${BENCH_HTTP_PORT:-18080}
ADMIN_PORT=${BENCH_ADMIN_PORT:-12019}

out=$(mktemp -d /tmp/push-bench.XXXXXX)
JSON=${JSON:-$out/results.jsonl}
CADDY_PID=""
cleanup() {
	if [[ -n $CADDY_PID ]]; then kill "$CADDY_PID" 2>/dev/null || true; wait "$CADDY_PID" 2>/dev/null || true; fi
	rm -rf "$out"
}
trap cleanup EXIT

echo "building cmd/caddy and the load tool..." >&2
go build -o "$out/caddy" ./cmd/caddy
go build -o "$out/push-bench" ./bench/push

# 10 000 subscribers: the server and the tool each hold one descriptor per
# connection.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

export PUSH_KEY="bench-$RANDOM$RANDOM$RANDOM"
export BENCH_HTTP_PORT=$HTTP_PORT BENCH_ADMIN_PORT=$ADMIN_PORT

start_caddy() {
	"$out/caddy" run --config bench/push.Caddyfile --adapter caddyfile >"$out/caddy.log" 2>&1 &
	CADDY_PID=$!
	for _ in $(seq 1 100); do
		if curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/config/" 2>/dev/null; then return 0; fi
		if ! kill -0 "$CADDY_PID" 2>/dev/null; then break; fi
		sleep 0.1
	done
	echo "caddy did not start:" >&2
	cat "$out/caddy.log" >&2
	exit 1
}

stop_caddy() {
	kill "$CADDY_PID" 2>/dev/null || true
	wait "$CADDY_PID" 2>/dev/null || true
	CADDY_PID=""
}

# Cells: name, then the tool's flags. 100 users x 10 events, so a user
# publish reaches N/100 connections, an event publish N/10, a broadcast N.
cell_flags() {
	case $1 in
	n1k-user) echo "-conns 1000 -target user -publishes 20000 -rate 0 -publishers 16" ;;
	n10k-user) echo "-conns 10000 -target user -publishes 5000 -rate 0 -publishers 16" ;;
	# The shape of the peers' figures in /work/shared/ANCHORS.md.
	n10k-anchor) echo "-conns 10000 -target user -publishes 4000 -rate 2000 -publishers 32" ;;
	# 50 000 deliveries/s offered: latency below saturation.
	n10k-user-500) echo "-conns 10000 -target user -publishes 5000 -rate 500 -publishers 16" ;;
	n10k-event) echo "-conns 10000 -target event -publishes 500 -rate 100 -publishers 8" ;;
	n10k-broadcast) echo "-conns 10000 -target broadcast -publishes 100 -rate 20 -publishers 4" ;;
	*) echo "unknown cell $1" >&2; return 1 ;;
	esac
}

status=0
for run in $(seq 1 "$RUNS"); do
	for c in $CELLS; do
		flags=$(cell_flags "$c")
		echo "== $c (run $run/$RUNS): $flags" >&2
		start_caddy
		# shellcheck disable=SC2086
		if ! timeout 400 "$out/push-bench" -ws "ws://127.0.0.1:$HTTP_PORT/ws" -push "http://127.0.0.1:$HTTP_PORT/push" \
			-admin "http://127.0.0.1:$ADMIN_PORT" -pid "$CADDY_PID" -label "$c" -json "$JSON" -timeout 300s $flags "$@" >&2; then
			echo "== $c: run not clean (see above)" >&2
			status=1
		fi
		stop_caddy
		sleep 1 # let the TIME_WAIT of the last cell's sockets thin out
	done
done

echo "machine: $(nproc) cores, $(uname -r), $(go version | cut -d' ' -f3)" >&2
"$out/push-bench" -report "$JSON"
exit $status
