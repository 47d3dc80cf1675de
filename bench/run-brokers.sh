#!/usr/bin/env bash
# Broker overhead benchmark for websocket_push: the bench/push load
# tool against
#   memory  one Caddy node, subscribers and publisher on it (the baseline)
#   nats    two Caddy nodes sharing a NATS server with JetStream: subscribers
#           on node A, publisher on node B (-cross-node)
#   redis   the same through a redis-server
# all with the same hub settings (history 1000 10m), and prints the figures
# and each broker's ratio to memory. Results: BENCHMARKS.md.
#
#   bench/run-brokers.sh                       # every cell, every broker, once
#   RUNS=3 CELLS="n1k-user" BROKERS="memory nats" bench/run-brokers.sh
#   HISTORY="" bench/run-brokers.sh            # brokers without history
#
# Needs redis-server on PATH; nats-server is built from the nats-server
# module already in go.mod. Loopback only; every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-1}
CELLS=${CELLS:-"n1k-user n1k-broadcast n10k-user n1k-user-500 n10k-user-200"}
BROKERS=${BROKERS:-"memory nats redis"}
HISTORY=${HISTORY-"history 1000 10m"}

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init broker-bench
build_tools

status=0
for run in $(seq 1 "$RUNS"); do
	for c in $CELLS; do
		flags=$(cell_flags "$c")
		for b in $BROKERS; do
			echo "== $c via $b (run $run/$RUNS): $flags" >&2
			extra=()
			case $b in
			memory)
				start_node a "broker memory"
				ws=$NODE_PORT pushp=$NODE_PORT admin=$NODE_ADMIN pid=$NODE_PID
				;;
			nats)
				np=$(free_port)
				"$out/nats-server" -a 127.0.0.1 -p "$np" -js -sd "$out/js-$run-$c" >"$out/nats.log" 2>&1 &
				PIDS+=("$!")
				wait_port "$np" "$!" "$out/nats.log" || exit 1
				start_node a "broker nats nats://127.0.0.1:$np"
				ws=$NODE_PORT admin=$NODE_ADMIN pid=$NODE_PID
				start_node b "broker nats nats://127.0.0.1:$np"
				pushp=$NODE_PORT extra=(-cross-node)
				;;
			redis)
				rp=$(free_port)
				redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no >"$out/redis.log" 2>&1 &
				PIDS+=("$!")
				wait_port "$rp" "$!" "$out/redis.log" || exit 1
				start_node a "broker redis redis://127.0.0.1:$rp"
				ws=$NODE_PORT admin=$NODE_ADMIN pid=$NODE_PID
				start_node b "broker redis redis://127.0.0.1:$rp"
				pushp=$NODE_PORT extra=(-cross-node)
				;;
			*) echo "unknown broker $b" >&2; exit 2 ;;
			esac
			t0=$(cpu_ticks)
			# shellcheck disable=SC2086
			if ! timeout 400 "$out/push-bench" -ws "ws://127.0.0.1:$ws/ws" -push "http://127.0.0.1:$pushp/push" \
				-admin "http://127.0.0.1:$admin" -pid "$pid" -label "$c via $b" -json "$JSON" -timeout 300s \
				"${extra[@]}" $flags "$@" >&2; then
				echo "== $c via $b: run not clean (see above)" >&2
				status=1
			fi
			t1=$(cpu_ticks)
			# CPU of every server-side process (the node(s) and the broker
			# server) over the whole run, per delivery: the cost of a
			# cross-node delivery independent of how the machine's CPU was
			# shared out.
			recv=$(tail -n 1 "$JSON" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Received"])')
			echo "$c via $b: server-side CPU (all processes) $(( (t1 - t0) * 10000 / ($(getconf CLK_TCK) * (recv / 100 + 1)) )) us/delivery over the whole run (connect included)" | tee -a "$out/cpu.txt" >&2
			stop_all
			sleep 1
		done
	done
done

echo "machine: $(nproc) cores, $(uname -r), $(go version | cut -d' ' -f3); history: ${HISTORY:-off}" >&2
"$out/push-bench" -report "$JSON"
echo
cat "$out/cpu.txt"
if [[ -n ${KEEP_JSON:-} ]]; then cp "$JSON" "$KEEP_JSON"; fi
exit $status
