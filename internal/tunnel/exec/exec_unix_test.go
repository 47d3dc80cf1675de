//go:build unix

package exec

import (
	"bytes"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func start(t *testing.T, cfg Config) *Process {
	t.Helper()
	p, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(); p.Wait(0) })
	return p
}

func readAll(t *testing.T, p *Process) string {
	t.Helper()
	var b bytes.Buffer
	_, err := io.Copy(&b, p.Conn())
	if err != nil {
		t.Fatalf("reading output: %v", err)
	}
	return b.String()
}

func TestEnvironmentHoldsNothingOfTheServer(t *testing.T) {
	t.Setenv("PUSH_KEY", "server-secret")
	p := start(t, Config{Command: []string{"/usr/bin/env"}, Env: []string{"A=1"}})
	out := readAll(t, p)
	if strings.Contains(out, "server-secret") || strings.Contains(out, "PUSH_KEY") {
		t.Fatalf("server environment leaked: %q", out)
	}
	if strings.TrimSpace(out) != "A=1" {
		t.Fatalf("env %q, want only A=1", out)
	}
}

func TestExitStatusAndSignalAreReported(t *testing.T) {
	p := start(t, Config{Command: []string{"/bin/sh", "-c", "exit 7"}})
	if s := p.Wait(5 * time.Second); s != "exit status 7" {
		t.Fatalf("status %q", s)
	}
	p = start(t, Config{Command: []string{"/bin/sh", "-c", "kill -KILL $$"}})
	if s := p.Wait(5 * time.Second); s != "signal SIGKILL" {
		t.Fatalf("status %q", s)
	}
}

// groupGone reports whether no process of the group pgid is left.
func groupGone(pgid int) bool {
	return syscall.Kill(-pgid, 0) == syscall.ESRCH
}

func TestTerminateKillsAGroupThatIgnoresSIGINTAndItsChildren(t *testing.T) {
	// The child ignores HUP and INT too and outlives its parent unless the
	// whole group is killed.
	p := start(t, Config{
		Command:   []string{"/bin/sh", "-c", "trap '' HUP INT; sleep 60 & echo ready; wait"},
		KillGrace: 200 * time.Millisecond,
	})
	buf := make([]byte, 6)
	if _, err := io.ReadFull(p.Conn(), buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("read %q %v", buf, err)
	}
	pgid := p.Pid()
	begin := time.Now()
	p.Terminate()
	status := p.Wait(0)
	if status != "signal SIGKILL" {
		t.Fatalf("status %q, want signal SIGKILL", status)
	}
	if took := time.Since(begin); took < 200*time.Millisecond {
		t.Fatalf("killed after %v, before the grace", took)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !groupGone(pgid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !groupGone(pgid) {
		t.Fatalf("group %d still has processes", pgid)
	}
}

func TestExitOfTheLeaderKillsWhatItLeftBehind(t *testing.T) {
	p := start(t, Config{Command: []string{"/bin/sh", "-c", "sleep 60 & exit 0"}})
	pgid := p.Pid()
	if s := p.Wait(5 * time.Second); s != "exit status 0" {
		t.Fatalf("status %q", s)
	}
	// The background sleep held stdout; the output still ends.
	if out := readAll(t, p); out != "" {
		t.Fatalf("output %q", out)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !groupGone(pgid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !groupGone(pgid) {
		t.Fatalf("group %d still has processes", pgid)
	}
}

func TestStderrLinesAreRateLimited(t *testing.T) {
	var lines, suppressed int
	done := make(chan struct{})
	p := start(t, Config{
		Command: []string{"/bin/sh", "-c", "i=0; while [ $i -lt 200 ]; do echo err$i >&2; i=$((i+1)); done"},
		Stderr: func(line []byte, n int) {
			if line == nil {
				suppressed += n
			} else {
				lines++
			}
		},
	})
	go func() { p.Wait(5 * time.Second); close(done) }()
	<-done
	if lines+suppressed != 200 || lines > 2*StderrRate {
		t.Fatalf("%d lines logged, %d suppressed", lines, suppressed)
	}
}

func TestMissingProgramFailsToStart(t *testing.T) {
	if _, err := Start(Config{Command: []string{"/nonexistent/prog"}}); err == nil {
		t.Fatal("started a missing program")
	}
}

func TestPTYResizeIsSeenByStty(t *testing.T) {
	p := start(t, Config{Command: []string{"/bin/sh", "-c", "read x; stty size"}, PTY: true, Cols: 80, Rows: 24})
	if err := p.Resize(132, 43); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Conn().Write([]byte("go\r")); err != nil {
		t.Fatal(err)
	}
	out := readAll(t, p)
	if !strings.Contains(out, "43 132") {
		t.Fatalf("stty size printed %q", out)
	}
}

func TestCredentialSwitchNeedsRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: the switch is allowed")
	}
	if _, err := LookupCredential("0", ""); err == nil || !strings.Contains(err.Error(), "root") {
		t.Fatalf("err %v", err)
	}
}
