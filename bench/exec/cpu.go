//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of the times in /proc/<pid>/stat; it is
// 100 on every Linux this tool runs on.
const clockTick = 100

// cpuTimes is CPU time in seconds: of the server processes themselves,
// and of the programs they run (those they reaped, from cutime and cstime,
// plus those still running, so a delta over a cell counts a program
// whether or not it was reaped by then).
type cpuTimes struct{ server, programs float64 }

func (p *peer) cpuTimes() cpuTimes {
	var c cpuTimes
	for _, pid := range p.pids {
		own, all := procTicks(pid)
		c.server += float64(own) / clockTick
		c.programs += float64(all-own) / clockTick
	}
	return c
}

// procTicks is the CPU time of pid alone (utime, stime) and with the
// children it reaped and its running descendants, in clock ticks.
func procTicks(pid int) (own, all int64) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return 0, 0
	}
	// The command name, in parentheses, may hold spaces: count the fields
	// after its closing parenthesis (utime is field 14 of the line).
	s := string(b)
	fs := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fs) < 15 {
		return 0, 0
	}
	for i, f := range fs[11:15] {
		t, _ := strconv.ParseInt(f, 10, 64)
		if i < 2 {
			own += t
		}
		all += t
	}
	tasks, _ := os.ReadDir(filepath.Join(dir, "task"))
	for _, t := range tasks {
		kids, _ := os.ReadFile(filepath.Join(dir, "task", t.Name(), "children"))
		for _, k := range strings.Fields(string(kids)) {
			if kid, err := strconv.Atoi(k); err == nil {
				_, kidAll := procTicks(kid)
				all += kidAll
			}
		}
	}
	return own, all
}

// settle waits, at most d, until the servers have no program left, so a
// CPU reading counts every program once: a program reaped between the
// reading of its server's times and of its children would be missed.
func (p *peer) settle(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if !p.hasChildren() {
			return
		}
	}
}

func (p *peer) hasChildren() bool {
	for _, pid := range p.pids {
		dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
		tasks, _ := os.ReadDir(dir)
		for _, t := range tasks {
			if kids, _ := os.ReadFile(filepath.Join(dir, t.Name(), "children")); len(strings.TrimSpace(string(kids))) > 0 {
				return true
			}
		}
	}
	return false
}

// selfCPU is this tool's own CPU time in seconds (the load generator).
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// cpuDelta records, into out, the CPU per unit (a session, a MB) since
// c0 and self0: of the server (key_server), its programs (key_programs)
// and this tool (key_client), in ms.
func (p *peer) cpuDelta(out map[string]float64, key string, c0 cpuTimes, self0, units float64) {
	if units <= 0 {
		return
	}
	c := p.cpuTimes()
	out[key+"_server"] = (c.server - c0.server) * 1e3 / units
	out[key+"_programs"] = (c.programs - c0.programs) * 1e3 / units
	out[key+"_client"] = (selfCPU() - self0) * 1e3 / units
}
