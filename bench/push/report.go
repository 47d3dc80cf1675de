//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// printReport prints one markdown row per label, each figure the median
// over the runs with that label.
func printReport(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var order []string
	runs := map[string][]result{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if _, ok := runs[r.Label]; !ok {
			order = append(order, r.Label)
		}
		runs[r.Label] = append(runs[r.Label], r)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	fmt.Fprintln(w, "| cell | N | target | publishes offered/achieved per s | deliveries/s | p50 / p99 ms | server µs/delivery | tool µs/delivery | RSS KiB/idle conn (heap, stack) | clean runs | load1 |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, label := range order {
		// Medians over clean runs only (nothing lost, no failed publish,
		// no connection closed under the load); the others are counted.
		var rs []result
		for _, r := range runs[label] {
			if r.Lost == 0 && r.Failed == 0 && len(r.UnexpectedCloses) == 0 && r.PublishError == "" {
				rs = append(rs, r)
			}
		}
		unclean := len(runs[label]) - len(rs)
		if len(rs) == 0 {
			fmt.Fprintf(w, "| %s | no clean run (%d unclean) |\n", label, unclean)
			continue
		}
		med := func(get func(r result) float64) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = get(r)
			}
			slices.Sort(v)
			if len(v)%2 == 1 {
				return v[len(v)/2]
			}
			return (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		mem := fmt.Sprintf("%.1f (%.1f, %.1f)", med(func(r result) float64 { return r.RSSPerConnKiB }),
			med(func(r result) float64 { return r.HeapPerConnKiB }), med(func(r result) float64 { return r.StackPerConnKiB }))
		if rs[0].HeapPerConnKiB == 0 && rs[0].StackPerConnKiB == 0 {
			mem = fmt.Sprintf("%.1f", med(func(r result) float64 { return r.RSSPerConnKiB }))
		}
		srv := fmt.Sprintf("%.1f", med(func(r result) float64 { return r.ServerCPUusPerDelivery }))
		if rs[0].AllServersCPUusPerDelivery > 0 {
			// Every node and broker server of the run (-cpu-pids).
			srv += fmt.Sprintf(" (all servers %.1f)", med(func(r result) float64 { return r.AllServersCPUusPerDelivery }))
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s / %.0f | %.0f | %.1f / %.1f | %s | %.1f | %s | %d/%d | %.1f |\n",
			label, rs[0].Conns, rs[0].Target, rateStr(rs[0].OfferedRate), med(func(r result) float64 { return r.PublishRate }),
			med(func(r result) float64 { return r.DeliveriesPerSec }),
			med(func(r result) float64 { return r.P50ms }), med(func(r result) float64 { return r.P99ms }),
			srv, med(func(r result) float64 { return r.ToolCPUusPerDelivery }),
			mem, len(rs), len(rs)+unclean, med(func(r result) float64 { return r.Load1 }))
	}
	return nil
}

func loadAvg() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	v, _ := strconv.ParseFloat(strings.Fields(string(b) + " 0")[0], 64)
	return v
}
