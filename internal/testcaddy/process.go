package testcaddy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Process is Caddy (Binary) running as its own process with a config, with
// HOME and the XDG directories inside the test so that nothing touches the
// user's Caddy data.
type Process struct {
	T      testing.TB
	Config string // the config it was started with
	Home   string
	cmd    *exec.Cmd
	log    *syncBuffer
	done   chan struct{}
}

// ProcessOptions adjust RunProcess.
type ProcessOptions struct {
	Adapter string   // config adapter; Default: caddyfile.
	Env     []string // added to the environment
	Dir     string   // working directory; Default: the repository root.
}

// RunProcess starts `caddy run` with config and stops it (SIGTERM, then
// SIGKILL after 10 s) when the test ends. It does not wait for Caddy to
// serve: the caller knows what to probe.
func RunProcess(t testing.TB, config string, opts ProcessOptions) (*Process, error) {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if opts.Adapter == "" {
		opts.Adapter = "caddyfile"
	}
	if opts.Dir == "" {
		opts.Dir = RepoRoot
	}
	home := t.TempDir()
	file := filepath.Join(home, "config")
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		return nil, fmt.Errorf("writing caddy config: %w", err)
	}
	p := &Process{T: t, Config: config, Home: home, log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "run", "--config", file, "--adapter", opts.Adapter)
	p.cmd.Dir = opts.Dir
	p.cmd.Env = append(append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home), opts.Env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	ownGroup(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting caddy: %w", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.Stop)
	return p, nil
}

// Log is what Caddy wrote so far.
func (p *Process) Log() string { return p.log.String() }

// Exited is closed when the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.done }

// PortTaken tells whether Caddy exited because a port was taken.
func (p *Process) PortTaken() bool { return AddrInUse(fmt.Errorf("%s", p.Log())) }

// Stop ends Caddy gracefully and fails the test if the race detector
// reported a race in it.
func (p *Process) Stop() {
	select {
	case <-p.done:
	default:
		terminate(p.cmd)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			kill(p.cmd)
			<-p.done
		}
	}
	if log := p.Log(); strings.Contains(log, "WARNING: DATA RACE") {
		i := strings.Index(log, "WARNING: DATA RACE")
		p.T.Errorf("the race detector reported a data race in caddy:\n%s", log[i:min(len(log), i+8000)])
	}
}

// syncBuffer collects a child's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(b)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Tail is the last n bytes of s, for failure reports.
func Tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
