//go:build linux

// Command exec measures programs over WebSocket: caddyws's exec upstream
// (in a built Caddy) against Debian's websocketd, side by side in one run
// on loopback. Cells: sessions per second (connect, program start, first
// line, close), echo round trip through cat in lines and binary mode,
// binary throughput through cat (every byte checked), and the servers'
// memory per idle session (their own RSS, not the programs').
//
//	go run ./bench/exec -caddy /path/to/caddy -runs 3
//	go run ./bench/exec -only websocketd
//
// Every cell is bounded in time (and bytes) and stops by itself.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

type config struct {
	dur      time.Duration // per cell
	par      int           // concurrent clients in the sessions cell
	idle     int           // sessions in the memory cell
	maxBytes int64         // per throughput cell
	window   int           // most bytes in flight in the throughput cell
}

// results holds every run's figure: results[peer][metric] = per-run values.
type results map[string]map[string][]float64

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "exec bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	caddy := fs.String("caddy", "", "built cmd/caddy binary (caddyws is left out without it)")
	caddyfile := fs.String("caddyfile", "", "Caddyfile template replacing the built-in one ({port}, {admin}; routes /session, /lines, /binary)")
	wsd := fs.String("websocketd", "websocketd", "websocketd binary")
	only := fs.String("only", "", "comma-separated peers (caddyws,websocketd)")
	cellList := fs.String("cells", "", "comma-separated cells to run (sessions,rtt_lines,rtt_binary,tput,idle); default: all")
	runs := fs.Int("runs", 3, "runs; the table shows medians")
	jsonOut := fs.String("json", "", "also write every run's figures to this file")
	profDir := fs.String("profile", "", "save a CPU profile of Caddy (its admin /debug/pprof) during each of its cells of the first run into this folder")
	cfg := config{}
	fs.DurationVar(&cfg.dur, "dur", 2*time.Second, "duration of each cell")
	fs.IntVar(&cfg.par, "par", 4, "concurrent clients in the sessions cell")
	fs.IntVar(&cfg.idle, "idle", 200, "idle sessions in the memory cell")
	fs.IntVar(&cfg.window, "window", 256<<10, "most bytes in flight (sent, not yet echoed) in the throughput cell")
	fs.Int64Var(&cfg.maxBytes, "max-bytes", 1<<30, "most bytes per throughput cell")
	_ = fs.Parse(args)
	in := func(list, n string) bool { return list == "" || strings.Contains(","+list+",", ","+n+",") }
	want := func(n string) bool { return in(*only, n) }

	dir, err := os.MkdirTemp("", "exec-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var peers []*peer
	defer func() {
		for _, p := range peers {
			p.stop()
		}
	}()
	if *caddy != "" && want("caddyws") {
		tmpl := ""
		if *caddyfile != "" {
			b, err := os.ReadFile(*caddyfile)
			if err != nil {
				return err
			}
			tmpl = string(b)
		}
		p, err := startCaddy(dir, *caddy, tmpl)
		if err != nil {
			return err
		}
		peers = append(peers, p)
	}
	if want("websocketd") {
		bin, err := exec.LookPath(*wsd)
		if err != nil {
			return fmt.Errorf("websocketd is missing (apt-get install websocketd): %w", err)
		}
		p, err := startWebsocketd(dir, bin)
		if err != nil {
			return err
		}
		peers = append(peers, p)
	}
	if len(peers) == 0 {
		return fmt.Errorf("no peer to measure (give -caddy, or leave websocketd in -only)")
	}
	printEnv(os.Stderr)
	res := results{}
	load := [][3]float64{loadAvg()}
	for r := 1; r <= *runs; r++ {
		fmt.Fprintf(os.Stderr, "run %d/%d\n", r, *runs)
		// Cell by cell, every peer in turn: outside load falls on both alike.
		for i, c := range cells {
			if !in(*cellList, c.name) {
				continue
			}
			for _, p := range peers {
				out := map[string]float64{}
				var prof <-chan error
				if *profDir != "" && r == 1 && p.admin != "" {
					prof = profileCaddy(p.admin, filepath.Join(*profDir, fmt.Sprintf("cell%d.pprof", i)), cfg.dur)
				}
				err := c.run(ctx, p, cfg, out)
				if prof != nil {
					if perr := <-prof; perr != nil {
						fmt.Fprintln(os.Stderr, "  profile:", perr)
					}
				}
				if err != nil {
					return fmt.Errorf("%s: %w", p.name, err)
				}
				if res[p.name] == nil {
					res[p.name] = map[string][]float64{}
				}
				for k, v := range out {
					res[p.name][k] = append(res[p.name][k], v)
					fmt.Fprintf(os.Stderr, "  %-10s %-10s %10.1f\n", p.name, k, v)
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
		load = append(load, loadAvg())
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	writeTable(os.Stdout, peers, res, *runs, load)
	return nil
}

type cellFunc func(ctx context.Context, p *peer, cfg config, out map[string]float64) error

// settleWait bounds the wait for the programs of earlier sessions to be
// reaped around a CPU reading (more than both servers take to end them).
const settleWait = 5 * time.Second

type cell struct {
	name string
	run  cellFunc
}

var cells = []cell{
	{"sessions", func(ctx context.Context, p *peer, cfg config, out map[string]float64) error {
		p.settle(settleWait)
		c0, self0 := p.cpuTimes(), selfCPU()
		r, err := sessions(ctx, p.session, cfg.par, cfg.dur)
		out["sessions"], out["sess_connect_ms"], out["sess_first_ms"] = r.rate, r.connectMs, r.firstMs
		p.settle(settleWait)
		p.cpuDelta(out, "sess_cpu", c0, self0, float64(r.count))
		return err
	}},
	{"rtt_lines", rttCell("lines", websocket.TextMessage, 64)},
	{"rtt_binary", rttCell("binary", websocket.BinaryMessage, 64)},
	{"tput", func(ctx context.Context, p *peer, cfg config, out map[string]float64) error {
		p.settle(settleWait)
		c0, self0 := p.cpuTimes(), selfCPU()
		mbps, got, err := throughput(ctx, p.binary, 64<<10, cfg.window, cfg.dur, cfg.maxBytes)
		out["tput"] = mbps
		p.settle(settleWait)
		p.cpuDelta(out, "tput_cpu", c0, self0, float64(got)/1e6)
		return err
	}},
	{"idle", func(ctx context.Context, p *peer, cfg config, out map[string]float64) error {
		kib, err := idleMemory(ctx, p, cfg.idle, out)
		out["idle_kib"] = kib
		return err
	}},
}

func rttCell(mode string, typ, size int) cellFunc {
	return func(ctx context.Context, p *peer, cfg config, out map[string]float64) error {
		url := p.lines
		if mode == "binary" {
			url = p.binary
		}
		p50, p99, _, err := roundTrips(ctx, url, typ, size, cfg.dur)
		out["rtt50_"+mode], out["rtt99_"+mode] = p50, p99
		return err
	}
}

func loadAvg() [3]float64 {
	var l [3]float64
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		_, _ = fmt.Sscan(string(b), &l[0], &l[1], &l[2])
	}
	return l
}
