#!/usr/bin/env bash
# websocket_push over clustered brokers: two Caddy nodes (subscribers on
# node A, publisher on node B: bench/push -cross-node) over
#   redis          one redis-server
#   redis-cluster  a Redis Cluster of 3 masters + 3 replicas
#   nats           one nats-server with JetStream
#   nats-cluster   3 nats-servers in one cluster, clustered JetStream
# with the same hub settings (history 1000 10m). Reports deliveries/s, p99
# and the CPU of every server-side process (both Caddy nodes and every
# broker server) per delivery, and each cluster's ratio to its single
# server. Results: BENCHMARKS.md, "Broker clusters".
#
#   bench/run-clusters.sh                                  # every broker, once
#   RUNS=3 CELLS="n1k-user-500" bench/run-clusters.sh
#   MODE=failover bench/run-clusters.sh                    # failover recovery
#   MODE=failover FAILOVERS="nats-leader" RUNS=3 bench/run-clusters.sh
#
# Failover mode publishes at RATE/s (default 200) round robin to USERS
# (default 60) users, one subscriber each, kills one broker server with
# SIGKILL 3 s in and reports how long publishes failed or stalled, the
# status counts and the accepted publishes not delivered:
#   redis-master   a Redis Cluster master (it owns some users' slots)
#   nats-leader    the NATS server leading the history stream
#   nats-follower  a NATS server that does not lead it
#
# Needs redis-server and redis-cli on PATH and curl; nats-server is built
# from the module in go.mod. Loopback only; every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${MODE:-bench}
RUNS=${RUNS:-1}
CELLS=${CELLS:-"n1k-user-500 n1k-user"}
BROKERS=${BROKERS:-"redis redis-cluster nats nats-cluster"}
FAILOVERS=${FAILOVERS:-"redis-master nats-leader nats-follower"}
HISTORY=${HISTORY-"history 1000 10m"}
RATE=${RATE:-200}
USERS=${USERS:-60}

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init cluster-bench
build_tools

# start_redis <port> <args...>: one redis-server; sets RPID.
start_redis() {
	local port=$1
	shift
	mkdir -p "$out/redis-$port"
	redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$out/redis-$port" "$@" \
		>"$out/redis-$port.log" 2>&1 &
	RPID=$!
	PIDS+=("$RPID")
	wait_port "$port" "$RPID" "$out/redis-$port.log"
}

# redis_cluster: 3 masters + 3 replicas (node timeout 2 s); sets RC_PORTS
# and RC_PID[port].
declare -A RC_PID
redis_cluster() {
	RC_PORTS=()
	local p addrs=()
	for _ in 1 2 3 4 5 6; do
		p=$(free_port)
		start_redis "$p" --cluster-enabled yes --cluster-node-timeout 2000 --cluster-port "$(free_port)" \
			--repl-diskless-sync-delay 0
		RC_PORTS+=("$p")
		RC_PID[$p]=$RPID
		addrs+=("127.0.0.1:$p")
	done
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$out/create.log" 2>&1 ||
		{ cat "$out/create.log" >&2; return 1; }
	for p in "${RC_PORTS[@]}"; do
		for i in $(seq 1 200); do
			info=$(redis-cli -p "$p" info replication)$(redis-cli -p "$p" cluster info)
			if [[ $info == *cluster_state:ok* && ($info == *role:master* || $info == *master_link_status:up*) ]]; then break; fi
			if ((i == 200)); then echo "redis cluster node $p not ready" >&2; return 1; fi
			sleep 0.1
		done
	done
}

# nats_cluster: 3 servers, one cluster, JetStream on each; sets NC_URLS,
# NC_MON[i], NC_PID[i].
declare -A NC_MON NC_PID
nats_cluster() {
	local ports=() routes=() i j rs
	for i in 0 1 2; do ports+=("$(free_port)"); routes+=("$(free_port)"); NC_MON[$i]=$(free_port); done
	NC_URLS=""
	for i in 0 1 2; do
		rs=""
		for j in 0 1 2; do
			if ((i != j)); then rs+="${rs:+,}nats://127.0.0.1:${routes[$j]}"; fi
		done
		"$out/nats-server" -a 127.0.0.1 -p "${ports[$i]}" -n "n$i" -js -sd "$out/js-c$i-$RANDOM" -m "${NC_MON[$i]}" \
			--cluster_name c --cluster "nats://127.0.0.1:${routes[$i]}" --routes "$rs" >"$out/nats-$i.log" 2>&1 &
		NC_PID[$i]=$!
		PIDS+=("$!")
		NC_URLS+="${NC_URLS:+,}nats://127.0.0.1:${ports[$i]}"
	done
	for i in 0 1 2; do wait_port "${ports[$i]}" "${NC_PID[$i]}" "$out/nats-$i.log"; done
	for i in $(seq 1 150); do # a JetStream meta leader, so streams can be made
		if curl -fsS "http://127.0.0.1:${NC_MON[0]}/jsz" 2>/dev/null | grep -q '"leader": *"n'; then return 0; fi
		sleep 0.1
	done
	echo "no JetStream meta leader" >&2
	return 1
}

# nats_stream_leader prints the index of the server leading the history
# stream.
nats_stream_leader() {
	curl -fsS "http://127.0.0.1:${NC_MON[0]}/jsz?streams=true" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for a in d.get("account_details", []):
    for s in a.get("stream_detail", []):
        if s["name"] == "CADDYWS_PUSH":
            print(s["cluster"]["leader"][1:]); sys.exit(0)
sys.exit("history stream not found")'
}

# brokers <kind>: starts the broker servers and both nodes; sets WS, PUSHP,
# ADMIN, APID (node A).
brokers() {
	local line
	case $1 in
	redis)
		local rp
		rp=$(free_port)
		start_redis "$rp"
		line="broker redis redis://127.0.0.1:$rp"
		;;
	redis-cluster)
		redis_cluster
		line="broker redis {
			addrs 127.0.0.1:${RC_PORTS[0]} 127.0.0.1:${RC_PORTS[1]} 127.0.0.1:${RC_PORTS[2]}
		}"
		;;
	nats)
		local np
		np=$(free_port)
		"$out/nats-server" -a 127.0.0.1 -p "$np" -js -sd "$out/js-$RANDOM" >"$out/nats.log" 2>&1 &
		PIDS+=("$!")
		wait_port "$np" "$!" "$out/nats.log"
		line="broker nats nats://127.0.0.1:$np"
		;;
	nats-cluster)
		nats_cluster
		line="broker nats $NC_URLS"
		;;
	*) echo "unknown broker $1" >&2; return 2 ;;
	esac
	start_node a "$line"
	WS=$NODE_PORT ADMIN=$NODE_ADMIN APID=$NODE_PID
	start_node b "$line"
	PUSHP=$NODE_PORT
}

pid_list() { local IFS=,; echo "${PIDS[*]}"; }

status=0
for run in $(seq 1 "$RUNS"); do
	if [[ $MODE == failover ]]; then
		for f in $FAILOVERS; do
			echo "== failover $f (run $run/$RUNS): $RATE publishes/s over $USERS users" >&2
			extra=()
			case $f in
			redis-master)
				brokers redis-cluster
				# The first master (not the one node A's config lists first
				# only by chance: every master owns some users' slots).
				victim=$(redis-cli -p "${RC_PORTS[0]}" cluster nodes | awk '$3 ~ /master/ {split($2, a, "[:@]"); print a[2]; exit}')
				other=$(redis-cli -p "${RC_PORTS[0]}" cluster nodes | awk -v v="$victim" '$3 ~ /master/ {split($2, a, "[:@]"); if (a[2] != v) {print a[2]; exit}}')
				kpid=${RC_PID[$victim]}
				extra=(-redis-ok "127.0.0.1:$other")
				;;
			nats-leader | nats-follower)
				brokers nats-cluster
				leader=$(nats_stream_leader)
				k=$leader
				if [[ $f == nats-follower ]]; then k=$(((leader + 1) % 3)); fi
				kpid=${NC_PID[$k]}
				;;
			*) echo "unknown failover $f" >&2; exit 2 ;;
			esac
			if ! timeout 120 "$out/push-bench" -failover -ws "ws://127.0.0.1:$WS/ws" -push "http://127.0.0.1:$PUSHP/push" \
				-users "$USERS" -rate "$RATE" -kill-pid "$kpid" -kill-after 3s -run-for 20s -drain 15s \
				-label "$f" -json "$JSON" "${extra[@]}" "$@"; then
				echo "== failover $f: not clean (see above)" >&2
				status=1
			fi
			stop_all
			sleep 1
		done
		continue
	fi
	for c in $CELLS; do
		flags=$(cell_flags "$c")
		for b in $BROKERS; do
			echo "== $c via $b (run $run/$RUNS): $flags" >&2
			brokers "$b"
			# shellcheck disable=SC2086
			if ! timeout 400 "$out/push-bench" -ws "ws://127.0.0.1:$WS/ws" -push "http://127.0.0.1:$PUSHP/push" \
				-admin "http://127.0.0.1:$ADMIN" -pid "$APID" -cpu-pids "$(pid_list)" -label "$c via $b" \
				-json "$JSON" -timeout 300s -cross-node $flags "$@" >&2; then
				echo "== $c via $b: run not clean (see above)" >&2
				status=1
			fi
			stop_all
			sleep 1
		done
	done
done

echo "machine: $(nproc) cores, $(uname -r), $(go version | cut -d' ' -f3); history: ${HISTORY:-off}; load average now: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
if [[ $MODE == bench ]]; then
	"$out/push-bench" -report "$JSON"
	# Cluster / single ratios of the medians.
	python3 - "$JSON" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["Lost"] == 0 and r["Failed"] == 0 and not r.get("UnexpectedCloses"):
        runs.setdefault(r["Label"], []).append(r)
med = lambda rs, k: statistics.median(r.get(k, 0) for r in rs)
print()
for label in runs:
    cell, _, b = label.partition(" via ")
    single = runs.get(cell + " via " + b.replace("-cluster", ""))
    if not b.endswith("-cluster") or not single:
        continue
    c = runs[label]
    print("%s: cluster/single deliveries/s %.2f, p99 %.2f, all-servers CPU/delivery %.2f" % (
        label, med(c, "DeliveriesPerSec") / med(single, "DeliveriesPerSec"),
        med(c, "P99ms") / med(single, "P99ms"),
        med(c, "AllServersCPUusPerDelivery") / med(single, "AllServersCPUusPerDelivery")))
PY
fi
if [[ -n ${KEEP_JSON:-} ]]; then cp "$JSON" "$KEEP_JSON"; fi
exit $status
