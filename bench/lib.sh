# Shell shared by the websocket_push benchmarks (bench/run-push.sh,
# bench/run-brokers.sh, bench/run-clusters.sh); sourced, not run. The
# caller calls bench_init first; start_node also reads HISTORY.

# bench_init <name>: $out, a temp dir removed on exit (after the servers in
# PIDS are stopped; a script that tracks its servers otherwise sets its own
# EXIT trap after this), JSON in it unless set, the descriptor limit raised
# for 10 000 connections (the server and the tool each hold one per
# connection) and a random PUSH_KEY.
bench_init() {
	out=$(mktemp -d "/tmp/$1.XXXXXX")
	JSON=${JSON:-$out/results.jsonl}
	PIDS=()
	trap 'stop_all; rm -rf "$out"' EXIT
	ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
	export PUSH_KEY="bench-$RANDOM$RANDOM$RANDOM"
}

# Ports below the kernel's ephemeral range (32768+), which the tool's 10 000
# client connections use up, and not in use by any socket.
free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$((10000 + RANDOM % 20000))
		if ! ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null | grep -q .; then echo "$p"; return 0; fi
	done
	echo "no free port found" >&2
	return 1
}

stop_all() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}

# build_tools builds Caddy, nats-server (from the module in go.mod) and the
# load tool into $out.
build_tools() {
	echo "building cmd/caddy, nats-server and the load tool..." >&2
	go build -o "$out/caddy" ./cmd/caddy
	go build -o "$out/push-bench" ./bench/push
	go build -o "$out/nats-server" github.com/nats-io/nats-server/v2
}

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

# cell_flags prints the load tool's flags of a named cell. 100 users x 10
# events, so a user publish reaches N/100 connections, an event publish
# N/10, a broadcast N.
cell_flags() {
	case $1 in
	n1k-user) echo "-conns 1000 -target user -publishes 20000 -rate 0 -publishers 16" ;;
	n1k-broadcast) echo "-conns 1000 -target broadcast -publishes 2000 -rate 0 -publishers 4" ;;
	n10k-user) echo "-conns 10000 -target user -publishes 5000 -rate 0 -publishers 16" ;;
	# The shape commonly quoted for push servers: 10k connections, 2000 publishes/s.
	n10k-anchor) echo "-conns 10000 -target user -publishes 4000 -rate 2000 -publishers 32" ;;
	# 50 000 deliveries/s offered: latency below saturation.
	n10k-user-500) echo "-conns 10000 -target user -publishes 5000 -rate 500 -publishers 16" ;;
	# 10 000 deliveries/s offered: latency well below saturation.
	n10k-user-100) echo "-conns 10000 -target user -publishes 2000 -rate 100 -publishers 8" ;;
	n10k-event) echo "-conns 10000 -target event -publishes 500 -rate 100 -publishers 8" ;;
	n10k-broadcast) echo "-conns 10000 -target broadcast -publishes 100 -rate 20 -publishers 4" ;;
	# Across brokers, 20 000 deliveries/s offered: below saturation, so
	# latency is the broker hop and not a backlog (with -rate 0 the
	# publishing node is not slowed by the subscribers' node, and a queue
	# builds up between them).
	n1k-user-500) echo "-conns 1000 -target user -publishes 10000 -rate 500 -publishers 16" ;;
	n10k-user-200) echo "-conns 10000 -target user -publishes 4000 -rate 200 -publishers 16" ;;
	*) echo "unknown cell $1" >&2; return 1 ;;
	esac
}
