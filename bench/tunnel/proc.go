//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTick is USER_HZ, the unit of the CPU times in /proc/<pid>/stat; it is
// 100 on every Linux platform Go supports.
const clockTick = 10 * time.Millisecond

// probe reads the CPU time and memory of a proxy: its process and every
// descendant, since socat and websockify fork one process per connection.
// A zero pid (direct TCP) reads as zero.
type probe struct{ pid int }

type usage struct {
	CPU time.Duration // user+system of the tree, plus reaped children
	RSS int64         // sum of VmRSS, bytes
	HWM int64         // sum of VmHWM (peak RSS), bytes
}

func (p probe) tree() []int {
	if p.pid == 0 {
		return nil
	}
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := readStat(pid)
		if err != nil || len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[pid] = pp
	}
	in := map[int]bool{p.pid: true}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if !in[pid] && in[pp] {
				in[pid], changed = true, true
			}
		}
	}
	out := make([]int, 0, len(in))
	for pid := range in {
		out = append(out, pid)
	}
	return out
}

// readStat returns the fields of /proc/<pid>/stat after the command name
// (field 3, the state, is index 0).
func readStat(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed stat for pid %d", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

func (p probe) read() usage {
	var u usage
	for _, pid := range p.tree() {
		if f, err := readStat(pid); err == nil && len(f) > 14 {
			// utime, stime, cutime, cstime are fields 14..17 (indexes 11..14).
			for _, s := range f[11:15] {
				v, _ := strconv.ParseInt(s, 10, 64)
				u.CPU += time.Duration(v) * clockTick
			}
		}
		rss, hwm := memOf(pid)
		u.RSS += rss
		u.HWM += hwm
	}
	return u
}

func memOf(pid int) (rss, hwm int64) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var dst *int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &rss
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &hwm
		default:
			continue
		}
		if fs := strings.Fields(line); len(fs) >= 2 {
			kb, _ := strconv.ParseInt(fs[1], 10, 64)
			*dst = kb << 10
		}
	}
	return rss, hwm
}

// resetPeak resets VmHWM of the tree to the current RSS (clear_refs value 5),
// so a cell's peak is its own and not an earlier cell's.
func (p probe) resetPeak() {
	for _, pid := range p.tree() {
		_ = os.WriteFile(filepath.Join("/proc", strconv.Itoa(pid), "clear_refs"), []byte("5"), 0)
	}
}

// sampler records the highest tree RSS seen while it runs; it also catches
// per-connection children that exit before the cell ends.
type sampler struct {
	p    probe
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	peak int64
}

func startSampler(p probe, every time.Duration) *sampler {
	s := &sampler{p: p, stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			u := p.read()
			s.mu.Lock()
			s.peak = max(s.peak, u.RSS, u.HWM)
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the peak RSS in bytes.
func (s *sampler) Stop() int64 {
	close(s.stop)
	s.wg.Wait()
	u := s.p.read()
	return max(s.peak, u.RSS, u.HWM)
}
