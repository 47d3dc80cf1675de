//go:build linux

// Command tunnel measures WebSocket-to-TCP tunnels against direct TCP and a
// socat relay, all in one run on loopback: verified-echo throughput, round
// trip latency, connections per second, and the proxy's CPU and memory.
//
//	go run ./bench/tunnel compare -caddy /tmp/x/caddy -runs 3
//	go run ./bench/tunnel run -target ws://127.0.0.1:8080/ -cells tput
//	go run ./bench/tunnel echo -listen 127.0.0.1:9000
//	go run ./bench/tunnel table -json runs.json   # the table again, from compare -json
//	go run ./bench/tunnel relay -upstream 127.0.0.1:9000 [-dial-early]
//
// Every cell is bounded in time and bytes and stops by itself; every echoed
// byte is compared with what was sent.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		printUsage()
	}
	// echo and relay keep the default signal handling: SIGTERM (from
	// compare, or as the parent-death signal) ends them at once.
	ctx := context.Background()
	if a := os.Args[1]; a == "run" || a == "compare" {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	var err error
	switch os.Args[1] {
	case "echo":
		fs := flag.NewFlagSet("echo", flag.ExitOnError)
		addr := fs.String("listen", "127.0.0.1:0", "address to listen on (loopback)")
		_ = fs.Parse(os.Args[2:])
		err = runEcho(*addr)
	case "run":
		err = cmdRun(ctx, os.Args[2:])
	case "relay":
		err = runRelay(os.Args[2:])
	case "compare":
		err = cmdCompare(ctx, os.Args[2:])
	case "table":
		err = cmdTable(os.Args[2:])
	default:
		printUsage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tunnel bench:", err)
		os.Exit(1)
	}
}

func printUsage() {
	fmt.Fprintln(os.Stderr, "usage: tunnel echo|relay|run|compare|table [flags]  (-h after a subcommand lists its flags)")
	os.Exit(2)
}

func benchFlags(fs *flag.FlagSet) *benchConfig {
	c := &benchConfig{}
	fs.DurationVar(&c.dur, "dur", 3*time.Second, "duration of each throughput cell")
	fs.DurationVar(&c.rttDur, "rtt-dur", 2*time.Second, "duration of each latency cell")
	fs.DurationVar(&c.connDur, "conn-dur", 2*time.Second, "duration of the connections/s cell")
	fs.DurationVar(&c.floodDur, "flood-dur", 4*time.Second, "how long the flood writes without reading")
	fs.Int64Var(&c.floodMax, "flood-max", 256<<20, "most bytes the flood writes")
	fs.StringVar(&c.cells, "cells", "", "comma-separated subset of tput,rtt,conns,flood (default: all)")
	return c
}

// cmdRun measures one already running target.
func cmdRun(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	url := fs.String("target", "", "tcp://host:port or ws://host:port/path of an echo service")
	pid := fs.Int("pid", 0, "proxy process id, for CPU and memory (0: not measured)")
	cfg := benchFlags(fs)
	_ = fs.Parse(args)
	if *url == "" {
		return fmt.Errorf("-target is required")
	}
	p := &peer{target: target{Name: "target", URL: *url}, pid: *pid}
	out := map[string]float64{}
	err := runCells(ctx, p, *cfg, out, os.Stderr)
	_ = json.NewEncoder(os.Stdout).Encode(out)
	return err
}

// cmdCompare starts the echo upstream, socat, websockify and (with -caddy)
// our tunnel, measures them in turn, -runs times, and prints the table.
func cmdCompare(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	caddy := fs.String("caddy", "", "built cmd/caddy binary (our tunnel is left out without it)")
	caddyfile := fs.String("caddyfile", "", "Caddyfile template replacing the built-in one ({upstream}, {port}, {admin})")
	runs := fs.Int("runs", 3, "runs; the table shows medians")
	only := fs.String("only", "", "comma-separated peers to include (socat,websockify,caddyws); direct TCP always runs")
	jsonOut := fs.String("json", "", "also write every run's figures to this file")
	relays := fs.String("relay", "", `extra peers: our engine without Caddy, as "name:flags;name2:flags" (e.g. "engine:;engine+early:-dial-early")`)
	cfg := benchFlags(fs)
	_ = fs.Parse(args)

	dir, err := os.MkdirTemp("", "tunnel-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pc := peerConfig{dir: dir, caddy: *caddy, only: map[string]bool{}}
	if *caddyfile != "" {
		b, err := os.ReadFile(*caddyfile)
		if err != nil {
			return err
		}
		pc.caddyfile = string(b)
	}
	for _, v := range strings.Split(*relays, ";") {
		if name, flags, ok := strings.Cut(v, ":"); ok && name != "" {
			pc.relays = append(pc.relays, relayVariant{name: name, flags: strings.Fields(flags)})
		}
	}
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			pc.only[n] = true
		}
	}
	peers, cleanup, err := startPeers(ctx, pc)
	defer cleanup()
	if err != nil {
		return err
	}
	printEnv(os.Stderr)
	res := results{}
	// Cell by cell, every peer in turn: load from elsewhere on a shared
	// machine then falls on all peers of a cell alike.
	for run := 1; run <= *runs; run++ {
		fmt.Fprintf(os.Stderr, "run %d/%d\n", run, *runs)
		for _, c := range cells {
			if !cfg.want(c.group) {
				continue
			}
			for _, p := range peers {
				out := map[string]float64{}
				if err := c.run(ctx, p, *cfg, out, os.Stderr); err != nil {
					return err
				}
				if res[p.Name] == nil {
					res[p.Name] = map[string][]float64{}
				}
				for k, v := range out {
					res[p.Name][k] = append(res[p.Name][k], v)
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	writeTable(os.Stdout, peers, res, *runs)
	return nil
}

// cmdTable prints the table again from a compare run's -json file.
func cmdTable(args []string) error {
	fs := flag.NewFlagSet("table", flag.ExitOnError)
	in := fs.String("json", "", "figures written by compare -json")
	order := fs.String("peers", "direct TCP,socat,websockify,caddyws", "columns, in order")
	_ = fs.Parse(args)
	b, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	res := results{}
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("reading %s: %w", *in, err)
	}
	var peers []*peer
	runs := 0
	for _, n := range strings.Split(*order, ",") {
		if _, ok := res[n]; ok {
			peers = append(peers, &peer{target: target{Name: n}})
			for _, v := range res[n] {
				runs = max(runs, len(v))
			}
		}
	}
	writeTable(os.Stdout, peers, res, runs)
	return nil
}
