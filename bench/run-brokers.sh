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

# Ports below the kernel's ephemeral range (32768+), which the tool's 10 000
# client connections use up, and not in use by any socket.
free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$((10000 + RANDOM % 20000))
		if ! ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null | grep -q .; then echo "$p"; return 0; fi
	done
	echo "run-brokers.sh: no free port found" >&2
	return 1
}

out=$(mktemp -d /tmp/broker-bench.XXXXXX)
JSON=${JSON:-$out/results.jsonl}
PIDS=()
stop_all() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}
cleanup() { stop_all; rm -rf "$out"; }
trap cleanup EXIT

echo "building cmd/caddy, nats-server and the load tool..." >&2
go build -o "$out/caddy" ./cmd/caddy
go build -o "$out/push-bench" ./bench/push
go build -o "$out/nats-server" github.com/nats-io/nats-server/v2
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
export PUSH_KEY="bench-$RANDOM$RANDOM"

wait_port() { # port pid log; fails (after printing the log) if it never listens
	for _ in $(seq 1 150); do
		if ss -Hltn "sport = :$1" | grep -q .; then return 0; fi
		if ! kill -0 "$2" 2>/dev/null; then break; fi
		sleep 0.1
	done
	echo "server on :$1 did not start:" >&2
	cat "$3" >&2
	return 1
}

# start_node <name> <broker line>: a Caddy node; sets NODE_PORT, NODE_ADMIN,
# NODE_PID. A free port can be taken by someone else before Caddy binds it:
# then try other ports.
start_node() {
	for _ in 1 2 3; do
		if start_node_once "$@"; then return 0; fi
		kill "$NODE_PID" 2>/dev/null || true
	done
	exit 1
}
start_node_once() {
	NODE_PORT=$(free_port)
	NODE_ADMIN=$(free_port)
	cat >"$out/$1.Caddyfile" <<CADDY
{
	admin 127.0.0.1:$NODE_ADMIN
	auto_https off
	log {
		level WARN
	}
}
http://:$NODE_PORT {
	bind 127.0.0.1
	websocket_push /ws {
		hub bench
		auth token_is_user
		$HISTORY
		$2
	}
	websocket_push /push {
		hub bench
		publish_key {env.PUSH_KEY}
	}
}
CADDY
	"$out/caddy" run --config "$out/$1.Caddyfile" --adapter caddyfile >"$out/$1.log" 2>&1 &
	NODE_PID=$!
	PIDS+=("$NODE_PID")
	wait_port "$NODE_PORT" "$NODE_PID" "$out/$1.log" && wait_port "$NODE_ADMIN" "$NODE_PID" "$out/$1.log"
}

cell_flags() {
	case $1 in
	n1k-user) echo "-conns 1000 -target user -publishes 20000 -rate 0 -publishers 16" ;;
	n10k-user) echo "-conns 10000 -target user -publishes 5000 -rate 0 -publishers 16" ;;
	n1k-broadcast) echo "-conns 1000 -target broadcast -publishes 2000 -rate 0 -publishers 4" ;;
	n10k-anchor) echo "-conns 10000 -target user -publishes 4000 -rate 2000 -publishers 32" ;;
	# 20 000 deliveries/s offered: below saturation, so latency is the
	# broker hop and not a backlog (with -rate 0 the publishing node is not
	# slowed by the subscribers' node, and a queue builds up between them).
	n1k-user-500) echo "-conns 1000 -target user -publishes 10000 -rate 500 -publishers 16" ;;
	n10k-user-200) echo "-conns 10000 -target user -publishes 4000 -rate 200 -publishers 16" ;;
	*) echo "unknown cell $1" >&2; return 1 ;;
	esac
}

# cpu_ticks sums user+system clock ticks of the running server processes.
cpu_ticks() {
	local sum=0 p f
	for p in "${PIDS[@]}"; do
		if f=$(cat "/proc/$p/stat" 2>/dev/null); then
			f=${f##*) }
			# shellcheck disable=SC2086
			set -- $f
			sum=$((sum + ${12} + ${13}))
		fi
	done
	echo "$sum"
}

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
