//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// metric is one row of the table; target is the ratio caddyws/websocketd
// it must reach (0: none): at least target when higher is better, at most
// target otherwise.
type metric struct {
	key, label string
	higher     bool
	target     float64
}

var metrics = []metric{
	{"sessions", "sessions/s (connect, program start, first line, close), 4 at a time", true, 1.5},
	{"sess_connect_ms", "… of a session: connect to the 101, median, ms", false, 0},
	{"sess_first_ms", "… of a session: 101 to the program's first line, median, ms", false, 0},
	{"sess_cpu_server", "… CPU per session: the server itself, ms", false, 0},
	{"sess_cpu_programs", "… CPU per session: its programs (sh, cat), ms", false, 0},
	{"sess_cpu_client", "… CPU per session: the load tool, ms", false, 0},
	{"rtt50_lines", "echo RTT p50 through cat, lines, 64 B, µs", false, 0.8},
	{"rtt99_lines", "echo RTT p99 through cat, lines, 64 B, µs", false, 0.8},
	{"rtt50_binary", "echo RTT p50 through cat, binary, 64 B, µs", false, 0.8},
	{"rtt99_binary", "echo RTT p99 through cat, binary, 64 B, µs", false, 0.8},
	{"tput", "binary throughput through cat, 64 KiB messages, MB/s", true, 2},
	{"tput_cpu_server", "… CPU per MB echoed: the server itself, ms", false, 0},
	{"tput_cpu_programs", "… CPU per MB echoed: cat, ms", false, 0},
	{"tput_cpu_client", "… CPU per MB echoed: the load tool, ms", false, 0},
	{"idle_kib", "server memory per idle session (RSS delta / N, programs excluded), KiB", false, 0},
	{"idle_go_kib", "… Caddy's Go heap and stacks per idle session (runtime memstats after a GC), KiB", false, 0},
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtVal(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// writeTable prints medians, the caddyws/websocketd ratio and whether each
// target is met, then the load average before and after every run.
func writeTable(w io.Writer, peers []*peer, res results, runs int, load [][3]float64) {
	fmt.Fprintf(w, "medians of %d runs\n\n| metric |", runs)
	for _, p := range peers {
		fmt.Fprintf(w, " %s |", p.name)
	}
	both := res["caddyws"] != nil && res["websocketd"] != nil
	if both {
		fmt.Fprint(w, " caddyws / websocketd | target |")
	}
	fmt.Fprint(w, "\n|---|")
	for range peers {
		fmt.Fprint(w, "---:|")
	}
	if both {
		fmt.Fprint(w, "---:|---|")
	}
	fmt.Fprintln(w)
	for _, m := range metrics {
		measured := false
		for _, p := range peers {
			measured = measured || len(res[p.name][m.key]) > 0
		}
		if !measured { // a cell left out with -cells
			continue
		}
		fmt.Fprintf(w, "| %s |", m.label)
		for _, p := range peers {
			if v := res[p.name][m.key]; len(v) > 0 {
				fmt.Fprintf(w, " %s |", fmtVal(median(v)))
			} else {
				fmt.Fprint(w, " – |")
			}
		}
		if both {
			ours, ref := median(res["caddyws"][m.key]), median(res["websocketd"][m.key])
			r := "–"
			if ref > 0 {
				r = fmt.Sprintf("%.2f×", ours/ref)
			}
			verdict := ""
			if m.target > 0 && ref > 0 {
				met := ours/ref >= m.target
				op := "≥"
				if !m.higher {
					met, op = ours/ref <= m.target, "≤"
				}
				verdict = fmt.Sprintf("%s %.1f×: %s", op, m.target, map[bool]string{true: "met", false: "MISSED"}[met])
			}
			fmt.Fprintf(w, " %s | %s |", r, verdict)
		}
		fmt.Fprintln(w)
	}
	var ls []string
	for _, l := range load {
		ls = append(ls, fmt.Sprintf("%.2f", l[0]))
	}
	fmt.Fprintf(w, "\nload average (1 min) before the first run and after each: %s\n", strings.Join(ls, ", "))
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
