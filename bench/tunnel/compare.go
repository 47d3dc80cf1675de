//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// metric is one row of the table.
type metric struct {
	key, label string
	higher     bool // higher is better
	noRatio    bool // near-zero figures (flood growth): a ratio would mislead
}

var metrics = []metric{
	{"tput_64k_1", "64 KiB × 1 conn, MB/s", true, false},
	{"tput_1k_1", "1 KiB × 1 conn, MB/s", true, false},
	{"tput_64k_8", "64 KiB × 8 conns, MB/s", true, false},
	{"tput_1k_8", "1 KiB × 8 conns, MB/s", true, false},
	{"rtt50_64", "RTT p50, 64 B, µs", false, false},
	{"rtt99_64", "RTT p99, 64 B, µs", false, false},
	{"rtt50_16k", "RTT p50, 16 KiB, µs", false, false},
	{"rtt99_16k", "RTT p99, 16 KiB, µs", false, false},
	{"conns", "connections/s, one after another (open, echo 16 B, close)", true, false},
	{"conns_8", "connections/s, 8 at a time", true, false},
	{"cpu_conns_8", "proxy CPU per connection (8 at a time), µs", false, false},
	{"cpu_1k", "proxy CPU per echoed byte, 1 KiB × 1, ns", false, false},
	{"cpu_1k_pct", "proxy CPU during 1 KiB × 1, % of one core", false, false},
	{"flood_rss", "proxy peak RSS, 1 KiB flood (client not reading), MB", false, false},
	{"flood_growth", "proxy RSS growth during the flood, MB", false, true},
	{"flood_acc", "bytes taken in while the client did not read, MB", false, false},
	{"flood_acc_late", "… of which in the flood's second half, MB", false, true},
}

type benchConfig struct {
	dur      time.Duration // per throughput cell
	rttDur   time.Duration
	connDur  time.Duration
	floodDur time.Duration
	floodMax int64
	cells    string // comma-separated subset of tput,rtt,conns,flood; "" is all
}

func (c benchConfig) want(cell string) bool {
	return c.cells == "" || strings.Contains(","+c.cells+",", ","+cell+",")
}

// cell measures one or a few metrics against one peer.
type cell struct {
	group string // what -cells selects: tput, rtt, conns, flood
	run   func(ctx context.Context, p *peer, cfg benchConfig, out map[string]float64, logw io.Writer) error
}

func tputCell(key string, size, conns int) cell {
	return cell{"tput", func(ctx context.Context, p *peer, cfg benchConfig, out map[string]float64, logw io.Writer) error {
		pr := p.probe()
		r, err := throughput(ctx, p.target, size, conns, cfg.dur, pr)
		if err != nil {
			return fmt.Errorf("%s %s: %w", p.Name, key, err)
		}
		out[key] = r.MBps
		if key == "tput_1k_1" && pr.pid != 0 {
			out["cpu_1k"] = float64(r.CPU.Nanoseconds()) / float64(r.Bytes)
			out["cpu_1k_pct"] = 100 * r.CPU.Seconds() / cfg.dur.Seconds()
		}
		fmt.Fprintf(logw, "  %-12s %-11s %8.1f MB/s (cpu %s)\n", p.Name, key, r.MBps, r.CPU)
		return nil
	}}
}

func rttCell(key string, size int) cell {
	return cell{"rtt", func(ctx context.Context, p *peer, cfg benchConfig, out map[string]float64, logw io.Writer) error {
		r, err := roundTrips(ctx, p.target, size, cfg.rttDur)
		if err != nil {
			return fmt.Errorf("%s rtt %s: %w", p.Name, key, err)
		}
		out["rtt50_"+key] = float64(r.P50.Nanoseconds()) / 1e3
		out["rtt99_"+key] = float64(r.P99.Nanoseconds()) / 1e3
		fmt.Fprintf(logw, "  %-12s rtt %-7s p50 %s p99 %s (n=%d)\n", p.Name, key, r.P50, r.P99, r.N)
		return nil
	}}
}

func connsCell(key string, par int) cell {
	return cell{"conns", func(ctx context.Context, p *peer, cfg benchConfig, out map[string]float64, logw io.Writer) error {
		pr := p.probe()
		before := pr.read()
		cps, n, err := connsPerSec(ctx, p.target, cfg.connDur, par)
		if err != nil {
			return fmt.Errorf("%s %s: %w", p.Name, key, err)
		}
		// Per-connection children (socat, websockify) are reaped by
		// then or still running: both are counted.
		time.Sleep(200 * time.Millisecond)
		cpu := pr.read().CPU - before.CPU
		out[key] = cps
		if pr.pid != 0 && n > 0 {
			out["cpu_"+key] = float64(cpu.Microseconds()) / float64(n)
		}
		fmt.Fprintf(logw, "  %-12s %-11s %8.0f/s (cpu %s for %d)\n", p.Name, key, cps, cpu, n)
		return nil
	}}
}

var floodCell = cell{"flood", func(ctx context.Context, p *peer, cfg benchConfig, out map[string]float64, logw io.Writer) error {
	pr := p.probe()
	// Let per-connection children of earlier cells exit first.
	time.Sleep(300 * time.Millisecond)
	f, err := flood(ctx, p.target, cfg.floodDur, cfg.floodMax, pr)
	if pr.pid != 0 {
		out["flood_rss"] = float64(f.PeakRSS) / 1e6
		out["flood_growth"] = float64(f.PeakRSS-f.BaseRSS) / 1e6
	}
	out["flood_acc"] = float64(f.Accepted) / 1e6
	out["flood_acc_late"] = float64(f.Accepted-f.AcceptedHalf) / 1e6
	fmt.Fprintf(logw, "  %-12s flood RSS %.1f -> peak %.1f MB, accepted %.1f MB (%.1f MB in the second half), drained %v\n",
		p.Name, float64(f.BaseRSS)/1e6, float64(f.PeakRSS)/1e6, float64(f.Accepted)/1e6, float64(f.Accepted-f.AcceptedHalf)/1e6, f.Drained)
	if err != nil {
		return fmt.Errorf("%s flood: %w", p.Name, err)
	}
	return nil
}}

// cells is every measurement, in the order a run makes them.
var cells = []cell{
	tputCell("tput_64k_1", 64<<10, 1), tputCell("tput_1k_1", 1<<10, 1),
	tputCell("tput_64k_8", 64<<10, 8), tputCell("tput_1k_8", 1<<10, 8),
	rttCell("64", 64), rttCell("16k", 16<<10),
	connsCell("conns", 1), connsCell("conns_8", 8),
	floodCell,
}

// runCells measures every selected metric once against one peer.
func runCells(ctx context.Context, p *peer, cfg benchConfig, out map[string]float64, logw io.Writer) error {
	for _, c := range cells {
		if cfg.want(c.group) {
			if err := c.run(ctx, p, cfg, out, logw); err != nil {
				return err
			}
		}
	}
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// results[peer][metric] holds one value per run.
type results map[string]map[string][]float64

func fmtVal(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// ratio is "how many times better" than the reference: >1 is better, for
// every row, whichever way the row points.
func ratio(ours, ref float64, higher bool) string {
	if ours == 0 || ref == 0 || math.IsNaN(ours) || math.IsNaN(ref) {
		return "—"
	}
	if higher {
		return fmt.Sprintf("%.2f×", ours/ref)
	}
	return fmt.Sprintf("%.2f×", ref/ours)
}

func writeTable(w io.Writer, peers []*peer, res results, runs int) {
	names := make([]string, len(peers))
	for i, p := range peers {
		names[i] = p.Name
	}
	ours := "caddyws"
	_, haveOurs := res[ours]
	fmt.Fprintf(w, "| metric (median of %d runs) | %s |", runs, strings.Join(names, " | "))
	if haveOurs {
		fmt.Fprint(w, " caddyws vs socat | caddyws vs websockify |")
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "|---|"+strings.Repeat("---:|", len(names)))
	if haveOurs {
		fmt.Fprint(w, "---:|---:|")
	}
	fmt.Fprintln(w)
	for _, m := range metrics {
		fmt.Fprintf(w, "| %s |", m.label)
		for _, n := range names {
			fmt.Fprintf(w, " %s |", fmtVal(median(res[n][m.key])))
		}
		if haveOurs && m.noRatio {
			fmt.Fprint(w, " | |")
		} else if haveOurs {
			o := median(res[ours][m.key])
			fmt.Fprintf(w, " %s | %s |", ratio(o, median(res["socat"][m.key]), m.higher), ratio(o, median(res["websockify"][m.key]), m.higher))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "\nRatios are \"times better\" (above 1 is better, for every row).")
	if haveOurs {
		writeVerdict(w, res)
	}
}

// writeVerdict checks the tunnel's performance targets against the medians.
func writeVerdict(w io.Writer, res results) {
	m := func(peer, key string) float64 { return median(res[peer][key]) }
	check := func(label string, ok bool, detail string) {
		mark := "MISS"
		if ok {
			mark = "met"
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", label, detail, mark)
	}
	fmt.Fprintln(w, "\n| target | measured | |\n|---|---|---|")
	r := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	// Two statistics for each ratio target: the ratio of the medians, and
	// the median of the per-run ratios (each pair measured back to back in
	// the same cell). "met" needs both, "borderline" one.
	ratioTarget := func(label, key, ref string, goal float64, atLeast bool, extra string) {
		a, b := res["caddyws"][key], res[ref][key]
		var per []float64
		for i := range min(len(a), len(b)) {
			per = append(per, r(a[i], b[i]))
		}
		if len(per) == 0 {
			fmt.Fprintf(w, "| %s | no %s figures | — |\n", label, ref)
			return
		}
		x, y := r(m("caddyws", key), m(ref, key)), median(per)
		meets := func(v float64) bool {
			if atLeast {
				return v >= goal
			}
			return v > 0 && v <= goal
		}
		mark := "MISS"
		switch {
		case meets(x) && meets(y):
			mark = "met"
		case meets(x) || meets(y):
			mark = "borderline"
		}
		lo, hi := slices.Min(per), slices.Max(per)
		fmt.Fprintf(w, "| %s | %.2f× (per-run ratios: median %.2f×, %.2f–%.2f×)%s | %s |\n", label, x, y, lo, hi, extra, mark)
	}
	ratioTarget("64 KiB × 1 ≥ 1.6× socat", "tput_64k_1", "socat", 1.6, true, "")
	ratioTarget("1 KiB × 1 ≥ 0.6× socat", "tput_1k_1", "socat", 0.6, true, "")
	ratioTarget("1 KiB × 8 ≥ 0.6× socat", "tput_1k_8", "socat", 0.6, true, "")
	ratioTarget("RTT p50 64 B ≤ 1.2× socat's", "rtt50_64", "socat", 1.2, false, "")
	ratioTarget("RTT p50 16 KiB ≤ 1.2× socat's", "rtt50_16k", "socat", 1.2, false, "")
	ratioTarget("connections/s ≥ 2× socat (one after another)", "conns", "socat", 2, true, "")
	ratioTarget("connections/s ≥ 2× socat (8 at a time)", "conns_8", "socat", 2, true,
		fmt.Sprintf("; CPU per connection %.2f× socat's", r(m("caddyws", "cpu_conns_8"), m("socat", "cpu_conns_8"))))
	// Kernel socket buffers hold megabytes on loopback even with perfect
	// backpressure (direct TCP and socat show how much), and autotuning
	// grows them in the first moments. A proxy that pushes back stops
	// taking bytes in once they are full: nothing more in the flood's
	// second half, and its RSS stays flat.
	growth, late := m("caddyws", "flood_growth"), m("caddyws", "flood_acc_late")
	check("bounded memory under a flood", growth < 16 && late < 1,
		fmt.Sprintf("RSS +%.1f MB (peak %.1f MB); %.1f MB taken in during the flood's second half (socat: +%.1f MB, %.1f MB; websockify: +%.1f MB, %.1f MB)",
			growth, m("caddyws", "flood_rss"), late, m("socat", "flood_growth"), m("socat", "flood_acc_late"),
			m("websockify", "flood_growth"), m("websockify", "flood_acc_late")))
	ratioTarget("CPU per byte < ¼ of websockify's", "cpu_1k", "websockify", 0.25, false, "")
}

func printEnv(w io.Writer) {
	host, _ := os.Hostname()
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	fmt.Fprintf(w, "host %s, %s, %s\n", host, cpu, time.Now().UTC().Format(time.RFC3339))
}
