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
#   SERVERS=caddy bench/run-push.sh    # skip the reference server
#   TRANSPORTS="ws sse sse-h2" CELLS=n10k-user-500 bench/run-push.sh
#                                      # subscribers over WebSocket, SSE on HTTP/1.1, SSE on h2c
#   FLOOR=0 bench/run-push.sh          # skip the floor measurement
#   CADDY_BIN=/path/to/caddy bench/run-push.sh   # a prebuilt cmd/caddy
#   PPROF=bench/out/prof bench/run-push.sh  # save a server CPU profile of each run's publish phase there
#
# Each cell runs against websocket_push in Caddy ("caddy") and against the
# tool's built-in reference server ("ref": the straightforward gorilla
# server of the peers' figures, one reader + one writer goroutine per
# connection), one after the other, so the two are compared on the same
# machine under the same background load. The reference speaks WebSocket
# only: it runs in the ws transport's cells.
#
# Before each cell, bench/floor measures the cheapest possible delivery on
# this machine (one goroutine writing the same small frame to N loopback
# sockets: CPU per write); each run's server CPU per delivery is reported
# as a ratio of the floor measured beside it ("× floor").
#
# Needs Go and about 20 000 file descriptors (raised here with ulimit).
# Every run is bounded: the tool stops itself (-timeout), and so does
# timeout(1) around it.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-1}
TRANSPORTS=${TRANSPORTS:-ws}
FLOOR=${FLOOR:-1}
CELLS=${CELLS:-"n1k-user n1k-broadcast n10k-user n10k-anchor n10k-user-500 n10k-user-100 n10k-event n10k-broadcast"}
SERVERS=${SERVERS:-"caddy ref"}
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init push-bench
# Random free loopback ports unless given: Caddy listens with SO_REUSEPORT,
# so a second Caddy on a fixed port (another run of this script, say) would
# silently share the connections.
HTTP_PORT=${BENCH_HTTP_PORT:-$(free_port)}
ADMIN_PORT=${BENCH_ADMIN_PORT:-$(free_port)}
REF_PORT=${BENCH_REF_PORT:-$(free_port)}
export BENCH_HTTP_PORT=$HTTP_PORT BENCH_ADMIN_PORT=$ADMIN_PORT

CADDY_PID=""
REF_PID=""
cleanup() {
	if [[ -n $REF_PID ]]; then kill "$REF_PID" 2>/dev/null || true; wait "$REF_PID" 2>/dev/null || true; fi
	if [[ -n $CADDY_PID ]]; then kill "$CADDY_PID" 2>/dev/null || true; wait "$CADDY_PID" 2>/dev/null || true; fi
	rm -rf "$out"
}
trap cleanup EXIT

echo "building cmd/caddy and the load tool..." >&2
if [[ -n ${CADDY_BIN:-} ]]; then
	cp "$CADDY_BIN" "$out/caddy"
else
	go build -o "$out/caddy" ./cmd/caddy
fi
go build -o "$out/push-bench" ./bench/push
go build -o "$out/floor" ./bench/floor

start_caddy() {
	"$out/caddy" run --config bench/push.Caddyfile --adapter caddyfile >"$out/caddy.log" 2>&1 &
	CADDY_PID=$!
	for _ in $(seq 1 100); do
		if curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/config/" 2>/dev/null; then
			local others
			others=$(ss -Hltnp "sport = :$HTTP_PORT" | grep -v "pid=$CADDY_PID," || true)
			if [[ -n $others ]]; then
				echo "run-push.sh: another process also listens on :$HTTP_PORT: $others" >&2
				exit 1
			fi
			return 0
		fi
		if ! kill -0 "$CADDY_PID" 2>/dev/null; then break; fi
		sleep 0.1
	done
	echo "caddy did not start:" >&2
	cat "$out/caddy.log" >&2
	exit 1
}

start_ref() {
	"$out/push-bench" -serve-reference "127.0.0.1:$REF_PORT" -timeout 600s 2>"$out/ref.log" &
	REF_PID=$!
	for _ in $(seq 1 100); do
		# The reference answers a GET on /push with 400 once it listens.
		if curl -s -o /dev/null "http://127.0.0.1:$REF_PORT/push" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "reference server did not start:" >&2
	cat "$out/ref.log" >&2
	exit 1
}

stop_ref() {
	kill "$REF_PID" 2>/dev/null || true
	wait "$REF_PID" 2>/dev/null || true
	REF_PID=""
}

stop_caddy() {
	kill "$CADDY_PID" 2>/dev/null || true
	wait "$CADDY_PID" 2>/dev/null || true
	CADDY_PID=""
}

status=0
for run in $(seq 1 "$RUNS"); do
	for c in $CELLS; do
		flags=$(cell_flags "$c")
		for transport in $TRANSPORTS; do
			floor=()
			if [[ $FLOOR == 1 ]]; then
				conns=$(sed -E 's/.*-conns ([0-9]+).*/\1/' <<<"$flags")
				if us=$(timeout 120 "$out/floor" -conns "$conns" -writes 200000); then
					floor=(-floor-us "$us")
				else
					echo "== floor measurement failed" >&2
					status=1
				fi
				sleep 1
			fi
			for server in $SERVERS; do
				if [[ $server == ref && $transport != ws ]]; then continue; fi
				label="$c"
				if [[ $transport != ws ]]; then label="$c $transport"; fi
				echo "== $label on $server (run $run/$RUNS): $flags" >&2
				case $server in
				caddy)
					start_caddy
					target=(-ws "ws://127.0.0.1:$HTTP_PORT/ws" -push "http://127.0.0.1:$HTTP_PORT/push"
						-admin "http://127.0.0.1:$ADMIN_PORT" -pid "$CADDY_PID" -label "$label")
					if [[ -n ${PPROF:-} ]]; then
						mkdir -p "$PPROF"
						target+=(-server-profile "$PPROF/${label// /-}-run$run.pprof")
					fi
					;;
				ref)
					start_ref
					target=(-ws "ws://127.0.0.1:$REF_PORT/ws" -push "http://127.0.0.1:$REF_PORT/push"
						-pid "$REF_PID" -label "$label (reference gorilla server)")
					;;
				*) echo "unknown server $server" >&2; exit 2 ;;
				esac
				# shellcheck disable=SC2086
				if ! timeout 400 "$out/push-bench" "${target[@]}" -transport "$transport" "${floor[@]}" -json "$JSON" -timeout 300s $flags "$@" >&2; then
					echo "== $label on $server: run not clean (see above)" >&2
					status=1
				fi
				if [[ $server == caddy ]]; then stop_caddy; else stop_ref; fi
				sleep 1 # let the last cell's sockets in TIME_WAIT thin out
			done
		done
	done
done

echo "machine: $(nproc) cores, $(uname -r), $(go version | cut -d' ' -f3)" >&2
"$out/push-bench" -report "$JSON"
exit $status
