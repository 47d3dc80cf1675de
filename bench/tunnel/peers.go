//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// peer is one way to reach the echo upstream: directly or through a proxy
// process this tool started (and stops).
type peer struct {
	target
	pid    int // the proxy's process, measured; 0 for direct TCP
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

func newPeer(t target, cmd *exec.Cmd, proxy bool) *peer {
	p := &peer{target: t, cmd: cmd, exited: make(chan struct{})}
	if proxy {
		p.pid = cmd.Process.Pid
	}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p
}

func (p *peer) probe() probe { return probe{pid: p.pid} }

func (p *peer) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	// Each proxy runs in its own process group: socat and websockify leave
	// per-connection children behind otherwise.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func startProc(dir, logName string, name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Dir = dir
	log, err := os.Create(filepath.Join(dir, logName))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	log.Close()
	return cmd, nil
}

func waitListening(addr string, exited <-chan struct{}, d time.Duration) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("process exited before listening on %s", addr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("nothing listening on %s after %s", addr, d)
}

// startEcho runs this binary's echo mode as its own process, so the
// upstream's CPU is neither the proxy's nor the load generator's.
func startEcho() (*peer, string, error) {
	p, addr, err := startSelf(false, "echo", "-listen", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("starting echo server: %w", err)
	}
	p.target = target{Name: "direct TCP", URL: "tcp://" + addr}
	return p, addr, nil
}

// startSelf runs this binary with args; it prints its address first.
func startSelf(proxy bool, args ...string) (*peer, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	p := newPeer(target{}, cmd, proxy)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		p.stop()
		return nil, "", fmt.Errorf("reading the address of %s: %w", args[0], err)
	}
	return p, strings.TrimSpace(line), nil
}

// caddyfileTemplate is the site our tunnel is measured with; {upstream},
// {port} and {admin} are filled in. Logs stay at Caddy's default level: one
// line per tunnel is part of what users run.
const caddyfileTemplate = `{
	admin 127.0.0.1:{admin}
	auto_https off
	persist_config off
}

http://127.0.0.1:{port} {
	websocket_tunnel {
		upstream {upstream}
	}
}
`

type peerConfig struct {
	dir       string
	caddy     string // path to the built cmd/caddy; "" leaves our tunnel out
	caddyfile string // template overriding caddyfileTemplate
	only      map[string]bool
	// relays are extra peers: our engine without Caddy ("relay" mode),
	// name -> extra flags (prototypes).
	relays []relayVariant
}

type relayVariant struct {
	name  string
	flags []string
}

// startPeers starts the echo upstream and every proxy in front of it. The
// returned peers are in table order; the echo peer is first (direct TCP).
func startPeers(ctx context.Context, cfg peerConfig) ([]*peer, func(), error) {
	var peers []*peer
	cleanup := func() {
		for i := len(peers) - 1; i >= 0; i-- {
			peers[i].stop()
		}
	}
	echo, up, err := startEcho()
	if err != nil {
		return nil, cleanup, err
	}
	peers = append(peers, echo)
	want := func(name string) bool { return len(cfg.only) == 0 || cfg.only[name] }

	add := func(name, scheme, logName string, mk func(port int) (string, []string)) error {
		if !want(name) {
			return nil
		}
		port, err := freePort()
		if err != nil {
			return err
		}
		bin, args := mk(port)
		cmd, err := startProc(cfg.dir, logName, bin, args...)
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		p := newPeer(target{Name: name, URL: scheme + addr + "/"}, cmd, true)
		peers = append(peers, p)
		if err := waitListening(addr, p.exited, 20*time.Second); err != nil {
			return fmt.Errorf("%s: %w (log: %s)", name, err, filepath.Join(cfg.dir, logName))
		}
		return nil
	}
	err = add("socat", "tcp://", "socat.log", func(port int) (string, []string) {
		return "socat", []string{
			fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,nodelay,backlog=1024", port),
			"TCP:" + up + ",nodelay",
		}
	})
	if err == nil {
		err = add("websockify", "ws://", "websockify.log", func(port int) (string, []string) {
			return "websockify", []string{fmt.Sprintf("127.0.0.1:%d", port), up}
		})
	}
	if err == nil && cfg.caddy != "" {
		err = add("caddyws", "ws://", "caddy.log", func(port int) (string, []string) {
			admin, _ := freePort()
			tpl := caddyfileTemplate
			if cfg.caddyfile != "" {
				tpl = cfg.caddyfile
			}
			r := strings.NewReplacer("{upstream}", up, "{port}", fmt.Sprint(port), "{admin}", fmt.Sprint(admin))
			path := filepath.Join(cfg.dir, "Caddyfile")
			_ = os.WriteFile(path, []byte(r.Replace(tpl)), 0o644)
			return cfg.caddy, []string{"run", "--config", path, "--adapter", "caddyfile"}
		})
	}
	for _, v := range cfg.relays {
		if err != nil {
			break
		}
		var p *peer
		var addr string
		p, addr, err = startSelf(true, append([]string{"relay", "-listen", "127.0.0.1:0", "-upstream", up}, v.flags...)...)
		if err == nil {
			p.target = target{Name: v.name, URL: "ws://" + addr + "/"}
			peers = append(peers, p)
		}
	}
	if err != nil {
		cleanup()
		return nil, func() {}, err
	}
	return peers, cleanup, nil
}
