//go:build linux

// Command push loads a websocket_push endpoint: it opens N subscribers
// (classic first frame {"token","event"}, spread over users and events and
// over several loopback source addresses), measures the server's memory per
// idle connection, then publishes at a rate over keep-alive HTTP POSTs and
// reports deliveries per second, publish-to-receive latency and CPU per
// delivery. It checks every delivery the server counted arrived, and that
// the server's counts match the subscription plan.
//
//	go run ./bench/push -ws ws://127.0.0.1:18080/ws -push http://127.0.0.1:18080/push \
//	    -key "$PUSH_KEY" -admin http://127.0.0.1:12019 -pid "$(pidof caddy)" \
//	    -conns 10000 -users 100 -events 10 -target user -publishes 20000 -rate 0
//
// bench/run-push.sh builds and starts Caddy with bench/push.Caddyfile and
// runs the standard matrix. Every phase is bounded in count and time.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"
)

type config struct {
	ws, admin, secret, label, jsonOut string
	cpuProfile                        string
	pid, conns, srcIPs, dialPar       int
	idle, timeout, drain              time.Duration
	plan                              publishPlan
}

func main() {
	var c config
	flag.StringVar(&c.ws, "ws", "ws://127.0.0.1:18080/ws", "subscribe URL (loopback)")
	flag.StringVar(&c.plan.url, "push", "http://127.0.0.1:18080/push", "publish URL (loopback)")
	flag.StringVar(&c.plan.key, "key", os.Getenv("PUSH_KEY"), "publish bearer key (default $PUSH_KEY)")
	flag.StringVar(&c.admin, "admin", "", "Caddy admin URL, to GC before memory readings (e.g. http://127.0.0.1:12019)")
	flag.IntVar(&c.pid, "pid", 0, "server process id, for RSS and CPU (0: not measured)")
	flag.IntVar(&c.conns, "conns", 1000, "subscribers")
	flag.IntVar(&c.plan.users, "users", 100, "distinct users the subscribers spread over")
	flag.IntVar(&c.plan.events, "events", 10, "distinct events the subscribers spread over (one per connection)")
	flag.IntVar(&c.srcIPs, "src-ips", 20, "loopback source addresses 127.0.0.1..N to dial from")
	flag.IntVar(&c.dialPar, "dial-par", 64, "concurrent dials")
	flag.StringVar(&c.secret, "jwt-secret", "", "sign HS256 JWTs (sub=user) with this secret instead of sending the user id as token")
	flag.StringVar(&c.plan.target, "target", "user", "addressing: user | event | user+event | users | broadcast")
	flag.IntVar(&c.plan.listSize, "list", 5, "users per publish with -target users")
	flag.IntVar(&c.plan.count, "publishes", 10000, "publishes in total")
	flag.Float64Var(&c.plan.rate, "rate", 1000, "offered publishes per second (0: as fast as -publishers allow)")
	flag.IntVar(&c.plan.workers, "publishers", 16, "concurrent publishing HTTP connections")
	flag.IntVar(&c.plan.pad, "pad", 0, "extra payload bytes per message")
	flag.DurationVar(&c.plan.maxDur, "max-publish", 60*time.Second, "the publish phase stops by itself after this")
	flag.DurationVar(&c.idle, "idle", 5*time.Second, "idle time before the memory reading")
	flag.DurationVar(&c.drain, "drain", 15*time.Second, "longest wait for the last deliveries")
	flag.DurationVar(&c.timeout, "timeout", 5*time.Minute, "the whole run stops by itself after this")
	flag.StringVar(&c.label, "label", "", "label of this run in the output")
	flag.StringVar(&c.jsonOut, "json", "", "append the result as one JSON line to this file")
	cpuProfile := flag.String("cpuprofile", "", "write the tool's own CPU profile of the publish phase to this file")
	refAddr := flag.String("serve-reference", "", "run the reference gorilla push server on this loopback address until -timeout, instead of a load")
	report := flag.String("report", "", "print a markdown table (medians per label) of the JSON lines in this file, and exit")
	flag.Parse()
	if *report != "" {
		if err := printReport(os.Stdout, *report); err != nil {
			fmt.Fprintln(os.Stderr, "push bench:", err)
			os.Exit(1)
		}
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if *refAddr != "" {
		if err := serveReference(ctx, *refAddr); err != nil {
			fmt.Fprintln(os.Stderr, "push bench:", err)
			os.Exit(1)
		}
		return
	}
	if *failover {
		if err := runFailover(ctx, c); err != nil {
			fmt.Fprintln(os.Stderr, "push bench:", err)
			os.Exit(1)
		}
		return
	}
	c.cpuProfile = *cpuProfile
	res, err := run(ctx, c)
	if res != nil {
		res.print(os.Stdout)
		if c.jsonOut != "" {
			if err := appendJSON(c.jsonOut, res); err != nil {
				fmt.Fprintln(os.Stderr, "push bench:", err)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "push bench:", err)
		os.Exit(1)
	}
}

// result is one run's figures.
type result struct {
	Label, Target                    string
	Conns, Users, Events             int
	Publishes, Failed                int64
	ConnectSeconds, ConnsPerSec      float64
	RSSBaseMiB, RSSIdleMiB           float64
	RSSPerConnKiB                    float64
	HeapPerConnKiB, StackPerConnKiB  float64
	GoroutinesPerConn                float64
	OfferedRate, PublishRate         float64
	ServerDelivered, Expected        int64
	Received, Lost                   int64
	DeliveriesPerSec                 float64
	P50ms, P90ms, P99ms, MaxMs       float64
	HTTPP50ms, HTTPP99ms             float64
	ServerCPUusPerDelivery           float64
	AllServersCPUusPerDelivery       float64 `json:",omitempty"` // every -cpu-pids process
	ToolCPUusPerDelivery             float64
	ServerCPUPercent, ToolCPUPercent float64
	Load1                            float64 // the machine's 1-minute load average when the run started
	UnexpectedCloses                 map[string]int
	PublishError                     string `json:",omitempty"`
}

func run(ctx context.Context, c config) (*result, error) {
	if err := raiseNoFile(uint64(c.conns) + 1024); err != nil {
		return nil, err
	}
	r := &result{Label: c.label, Target: c.plan.target, Conns: c.conns, Users: c.plan.users, Events: c.plan.events, OfferedRate: c.plan.rate, Load1: loadAvg()}
	base, baseMem, err := gcAndMeasure(ctx, c.admin, c.pid)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	logf("connecting %d subscribers (%d users x %d events, from %d source addresses)...", c.conns, c.plan.users, c.plan.events, c.srcIPs)
	start := time.Now()
	f, err := dialAll(ctx, c.ws, c.conns, c.plan.users, c.plan.events, c.srcIPs, c.dialPar, []byte(c.secret))
	if err != nil {
		return nil, err
	}
	defer f.closeAll()
	r.ConnectSeconds = time.Since(start).Seconds()
	r.ConnsPerSec = float64(c.conns) / r.ConnectSeconds
	logf("connected in %.2fs; idling %v before the memory reading", r.ConnectSeconds, c.idle)

	select {
	case <-time.After(c.idle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	idle, idleMem, err := gcAndMeasure(ctx, c.admin, c.pid)
	if err != nil {
		return nil, fmt.Errorf("idle reading: %w", err)
	}
	n := float64(c.conns)
	r.RSSBaseMiB, r.RSSIdleMiB = float64(base)/(1<<20), float64(idle)/(1<<20)
	r.RSSPerConnKiB = float64(idle-base) / n / 1024
	r.HeapPerConnKiB = (float64(idleMem.HeapInuse) - float64(baseMem.HeapInuse)) / n / 1024
	r.StackPerConnKiB = (float64(idleMem.StackInuse) - float64(baseMem.StackInuse)) / n / 1024
	r.GoroutinesPerConn = float64(idleMem.Goroutines-baseMem.Goroutines) / n
	logf("idle: RSS %.1f -> %.1f MiB = %.2f KiB/conn (heap %.2f, stacks %.2f KiB/conn, %.2f goroutines/conn)",
		r.RSSBaseMiB, r.RSSIdleMiB, r.RSSPerConnKiB, r.HeapPerConnKiB, r.StackPerConnKiB, r.GoroutinesPerConn)

	logf("publishing %d (%s) at %v/s with %d publishers...", c.plan.count, c.plan.target, rateStr(c.plan.rate), c.plan.workers)
	if c.cpuProfile != "" {
		pf, err := os.Create(c.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	srvCPU0, _ := procCPU(c.pid)
	allCPU0 := pidsCPU()
	toolCPU0 := selfCPU()
	pr := runPublishers(ctx, &c.plan)
	// Wait until every delivery the server counted has arrived (or the
	// drain bound passes).
	deadline := time.Now().Add(c.drain)
	want := wantDelivered(&c, pr)
	for f.received.Load() < want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	srvCPU1, _ := procCPU(c.pid)
	allCPU1 := pidsCPU()
	toolCPU1 := selfCPU()

	r.Publishes, r.Failed, r.ServerDelivered = pr.sent, pr.failed, pr.delivered
	if pr.firstErr != nil {
		r.PublishError = pr.firstErr.Error()
	}
	r.Received = f.received.Load()
	r.Lost = want - r.Received
	if pr.failed == 0 && pr.sent == int64(c.plan.count) {
		r.Expected = expectedTotal(&c.plan, c.conns)
	}
	end := time.Unix(0, f.lastRecv.Load())
	if end.Before(pr.last) {
		end = pr.last
	}
	wall := end.Sub(pr.first).Seconds()
	r.PublishRate = float64(pr.sent) / pr.last.Sub(pr.first).Seconds()
	r.DeliveriesPerSec = float64(r.Received) / wall
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	r.P50ms, r.P90ms, r.P99ms = ms(f.latency.quantile(.5)), ms(f.latency.quantile(.9)), ms(f.latency.quantile(.99))
	r.MaxMs = ms(time.Duration(f.latency.max.Load()))
	r.HTTPP50ms, r.HTTPP99ms = ms(pr.httpLat.quantile(.5)), ms(pr.httpLat.quantile(.99))
	if r.Received > 0 {
		r.ServerCPUusPerDelivery = float64(srvCPU1-srvCPU0) / float64(time.Microsecond) / float64(r.Received)
		r.ToolCPUusPerDelivery = float64(toolCPU1-toolCPU0) / float64(time.Microsecond) / float64(r.Received)
		r.AllServersCPUusPerDelivery = float64(allCPU1-allCPU0) / float64(time.Microsecond) / float64(r.Received)
	}
	r.ServerCPUPercent = 100 * (srvCPU1 - srvCPU0).Seconds() / wall
	r.ToolCPUPercent = 100 * (toolCPU1 - toolCPU0).Seconds() / wall
	r.UnexpectedCloses = f.unexpectedCloses()

	var problems []string
	if r.Lost != 0 {
		problems = append(problems, fmt.Sprintf("%d deliveries counted by the server never arrived", r.Lost))
	}
	if r.Expected != 0 && r.Expected != r.ServerDelivered && !*crossNode {
		problems = append(problems, fmt.Sprintf("server delivered %d, the subscription plan expects %d", r.ServerDelivered, r.Expected))
	}
	if pr.failed > 0 {
		problems = append(problems, fmt.Sprintf("%d publishes failed (first: %v)", pr.failed, pr.firstErr))
	}
	if len(r.UnexpectedCloses) > 0 {
		problems = append(problems, fmt.Sprintf("connections closed during the run: %v", r.UnexpectedCloses))
	}
	if len(problems) > 0 {
		return r, fmt.Errorf("run not clean: %v", problems)
	}
	return r, nil
}

// expectedTotal sums expectedFanout over every publish; the pattern
// repeats every users*events publishes, so each residue is computed once.
func expectedTotal(p *publishPlan, n int) int64 {
	period := p.users * p.events
	memo := map[int]int64{}
	var total int64
	for j := range p.count {
		k := j % period
		v, ok := memo[k]
		if !ok {
			v = expectedFanout(p, k, n)
			memo[k] = v
		}
		total += v
	}
	return total
}

func (r *result) print(w *os.File) {
	fmt.Fprintf(w, "%s conns=%d target=%s publishes=%d offered=%s/s achieved=%.0f/s | deliveries/s=%.0f received=%d lost=%d expected=%d | latency p50=%.2fms p90=%.2fms p99=%.2fms max=%.1fms | http p50=%.2fms p99=%.2fms | cpu/delivery server=%.2fus tool=%.2fus (server %.0f%%, tool %.0f%%) | idle RSS/conn=%.2fKiB heap=%.2fKiB stack=%.2fKiB goroutines/conn=%.2f | connect %.0f/s | closes=%v\n",
		r.Label, r.Conns, r.Target, r.Publishes, rateStr(r.OfferedRate), r.PublishRate, r.DeliveriesPerSec, r.Received, r.Lost, r.Expected,
		r.P50ms, r.P90ms, r.P99ms, r.MaxMs, r.HTTPP50ms, r.HTTPP99ms, r.ServerCPUusPerDelivery, r.ToolCPUusPerDelivery,
		r.ServerCPUPercent, r.ToolCPUPercent, r.RSSPerConnKiB, r.HeapPerConnKiB, r.StackPerConnKiB, r.GoroutinesPerConn, r.ConnsPerSec, r.UnexpectedCloses)
}

func rateStr(r float64) string {
	if r == 0 {
		return "max"
	}
	return fmt.Sprintf("%.0f", r)
}

func appendJSON(path string, r *result) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	return json.NewEncoder(f).Encode(r)
}

func raiseNoFile(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= need {
		return nil
	}
	if lim.Max < need {
		lim.Max = need // works as root (CAP_SYS_RESOURCE); else the check below says so
	}
	lim.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raising RLIMIT_NOFILE to %d for %d connections: %w (ulimit -n)", need, need-1024, err)
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}
