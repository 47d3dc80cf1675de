//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// peer is a server of programs over WebSocket: caddyws's exec upstream or
// websocketd. Each has one URL per program the cells use.
type peer struct {
	name string
	// session runs `echo ready; exec cat` (lines); lines and binary run cat.
	session, lines, binary string
	// pids are the server processes measured for memory (not the programs).
	pids []int
	// admin is Caddy's admin address (its /debug/pprof); "" for websocketd.
	admin string
	procs []*exec.Cmd
}

// sessionProgram prints one line, then echoes until stdin closes: a
// session is connect, program start, first byte, close.
var sessionProgram = []string{"/bin/sh", "-c", "echo ready; exec cat"}

// caddyfileTemplate serves the three programs; max_connections is above
// the idle cell's count.
const caddyfileTemplate = `{
	admin 127.0.0.1:{admin}
	auto_https off
	persist_config off
}

http://127.0.0.1:{port} {
	bind 127.0.0.1
	websocket_tunnel /session {
		exec /bin/sh -c "echo ready; exec cat" {
			mode lines
			allow_anonymous
		}
		max_connections 100000
	}
	websocket_tunnel /lines {
		exec /bin/cat {
			mode lines
			allow_anonymous
		}
		max_connections 100000
	}
	websocket_tunnel /binary {
		exec /bin/cat {
			mode binary
			allow_anonymous
		}
		max_connections 100000
	}
}
`

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func startProc(dir, logName, name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(name, args...)
	// Own process group: stop() ends the server and every program it runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Dir = dir
	log, err := os.Create(filepath.Join(dir, logName))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return cmd, nil
}

func waitListening(addr string, d time.Duration) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listening on %s after %s", addr, d)
}

// startCaddy runs the built caddy with caddyfileTemplate (or tmpl).
func startCaddy(dir, bin, tmpl string) (*peer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	if tmpl == "" {
		tmpl = caddyfileTemplate
	}
	cfg := strings.NewReplacer("{port}", strconv.Itoa(port), "{admin}", strconv.Itoa(admin)).Replace(tmpl)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	cmd, err := startProc(dir, "caddy.log", bin, "run", "--config", path, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	p := &peer{name: "caddyws", pids: []int{cmd.Process.Pid}, procs: []*exec.Cmd{cmd}, admin: fmt.Sprintf("127.0.0.1:%d", admin)}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitListening(addr, 30*time.Second); err != nil {
		p.stop()
		b, _ := os.ReadFile(filepath.Join(dir, "caddy.log"))
		return nil, fmt.Errorf("caddy: %w\n%s", err, b)
	}
	base := "ws://" + addr
	p.session, p.lines, p.binary = base+"/session", base+"/lines", base+"/binary"
	return p, nil
}

// startWebsocketd runs one websocketd per program (it serves one command
// per process): the session program, cat in lines mode, cat with --binary.
func startWebsocketd(dir, bin string) (*peer, error) {
	p := &peer{name: "websocketd"}
	var urls []string
	for i, args := range [][]string{
		append([]string{}, sessionProgram...),
		{"/bin/cat"},
		{"--binary=true", "/bin/cat"},
	} {
		port, err := freePort()
		if err != nil {
			p.stop()
			return nil, err
		}
		all := append([]string{"--address=127.0.0.1", "--port=" + strconv.Itoa(port), "--loglevel=error"}, args...)
		cmd, err := startProc(dir, fmt.Sprintf("websocketd-%d.log", i), bin, all...)
		if err != nil {
			p.stop()
			return nil, err
		}
		p.procs = append(p.procs, cmd)
		p.pids = append(p.pids, cmd.Process.Pid)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := waitListening(addr, 10*time.Second); err != nil {
			p.stop()
			return nil, fmt.Errorf("websocketd %v: %w", args, err)
		}
		urls = append(urls, "ws://"+addr+"/")
	}
	p.session, p.lines, p.binary = urls[0], urls[1], urls[2]
	return p, nil
}

func (p *peer) stop() {
	for _, c := range p.procs {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

// rss is the resident memory of the server processes alone (VmRSS), not
// of the programs they run.
func (p *peer) rss() int64 {
	var total int64
	for _, pid := range p.pids {
		f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fs := strings.Fields(sc.Text()); len(fs) >= 2 && fs[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(fs[1], 10, 64)
				total += kb << 10
			}
		}
		f.Close()
	}
	return total
}

// profileCaddy saves a CPU profile of Caddy over d into path, in the
// background; the channel reports the outcome.
func profileCaddy(admin, path string, d time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		secs := max(1, int(d.Round(time.Second)/time.Second))
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, secs)
		resp, err := (&http.Client{Timeout: d + 30*time.Second}).Get(url)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("%s: %s", url, resp.Status)
			return
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			done <- err
			return
		}
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		done <- errors.Join(err, f.Close())
	}()
	return done
}

// goMemory is Caddy's heap in use plus its goroutine stacks, in bytes,
// after a garbage collection (forced through its admin /debug/pprof/heap),
// from the runtime's memstats on the admin /debug/vars. Only Caddy has it.
func (p *peer) goMemory() (uint64, error) {
	if p.admin == "" {
		return 0, errors.New("no admin endpoint")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + p.admin + "/debug/pprof/heap?gc=1")
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	resp, err = c.Get("http://" + p.admin + "/debug/vars")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var v struct {
		Memstats struct{ HeapInuse, StackInuse uint64 } `json:"memstats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, fmt.Errorf("reading %s/debug/vars: %w", p.admin, err)
	}
	if v.Memstats.HeapInuse == 0 {
		return 0, errors.New("no memstats in /debug/vars")
	}
	return v.Memstats.HeapInuse + v.Memstats.StackInuse, nil
}
