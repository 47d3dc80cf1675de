//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// histogram records latencies in fixed buckets with atomic counters, so
// thousands of readers record without a lock: 10 µs steps up to 100 ms,
// then 1 ms steps up to 10 s, then one overflow bucket.
type histogram struct {
	fine   [10000]atomic.Int64 // [0, 100ms) by 10µs
	coarse [9900]atomic.Int64  // [100ms, 10s) by 1ms
	over   atomic.Int64
	count  atomic.Int64
	sum    atomic.Int64 // ns
	max    atomic.Int64 // ns
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	switch {
	case d < 100*time.Millisecond:
		h.fine[d/(10*time.Microsecond)].Add(1)
	case d < 10*time.Second:
		h.coarse[(d-100*time.Millisecond)/time.Millisecond].Add(1)
	default:
		h.over.Add(1)
	}
	h.count.Add(1)
	h.sum.Add(int64(d))
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := int64(q*float64(n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for i := range h.fine {
		if seen += h.fine[i].Load(); seen >= rank {
			return time.Duration(i+1) * 10 * time.Microsecond
		}
	}
	for i := range h.coarse {
		if seen += h.coarse[i].Load(); seen >= rank {
			return 100*time.Millisecond + time.Duration(i+1)*time.Millisecond
		}
	}
	return time.Duration(h.max.Load())
}

// procStatus reads VmRSS (bytes) and the thread count of pid.
func procRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// procCPU returns user+system CPU time of pid.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverMem is what the server reports about its Go memory through Caddy's
// admin /debug/vars.
type serverMem struct {
	HeapInuse, StackInuse, Sys, NumGC uint64
	Goroutines                        int
}

// gcAndMeasure asks Caddy's admin endpoint to run a GC (the heap profile
// with gc=1 does), waits for RSS to settle, and reads RSS and memstats.
func gcAndMeasure(ctx context.Context, admin string, pid int) (rss int64, mem serverMem, err error) {
	if admin != "" {
		for range 2 {
			if err := adminGet(ctx, admin+"/debug/pprof/heap?gc=1", io.Discard); err != nil {
				return 0, mem, fmt.Errorf("triggering a GC through the admin API: %w", err)
			}
		}
		var vars struct {
			Memstats struct {
				HeapInuse, StackInuse, Sys uint64
				NumGC                      uint64
			}
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(adminGet(ctx, admin+"/debug/vars", pw)) }()
		if err := json.NewDecoder(pr).Decode(&vars); err != nil {
			return 0, mem, fmt.Errorf("reading /debug/vars: %w", err)
		}
		_, _ = io.Copy(io.Discard, pr)
		mem = serverMem{HeapInuse: vars.Memstats.HeapInuse, StackInuse: vars.Memstats.StackInuse, Sys: vars.Memstats.Sys, NumGC: vars.Memstats.NumGC}
		var prof strings.Builder
		if err := adminGet(ctx, admin+"/debug/pprof/goroutine?debug=1", &prof); err == nil {
			// First line: "goroutine profile: total N".
			line, _, _ := strings.Cut(prof.String(), "\n")
			_, n, _ := strings.Cut(line, "total ")
			mem.Goroutines, _ = strconv.Atoi(strings.TrimSpace(n))
		}
	}
	select {
	case <-time.After(500 * time.Millisecond):
	case <-ctx.Done():
		return 0, mem, ctx.Err()
	}
	if pid > 0 {
		rss, err = procRSS(pid)
	}
	return rss, mem, err
}

var adminClient = &http.Client{Timeout: 60 * time.Second}

func adminGet(ctx context.Context, url string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// serverProfile fetches the server's CPU profile over d (at least 1 s)
// through the admin API into path; the channel gets the outcome.
func serverProfile(ctx context.Context, admin, path string, d time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		secs := max(1, int(d.Round(time.Second)/time.Second))
		done <- adminGet(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", admin, secs), f)
	}()
	return done
}
