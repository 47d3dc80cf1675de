package interop

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyws/caddyws/internal/testcaddy"
)

// peer is a WebSocket-to-TCP tunnel under test: ours or websockify.
type peer struct {
	name string
	// URLs tunnelled to the echo upstream, the EOF upstream, and a port
	// where nothing listens.
	echoURL, eofURL, deadURL string
	// deadCodes are the close codes this peer may send when the upstream
	// cannot be reached (websockify sends 1011).
	deadCodes []int
	// base64FirstStatus is the handshake status for the offer
	// "base64, binary": 101 by RFC 6455; websockify 0.10 answers 400.
	base64FirstStatus int
	// textCloseCode is how the peer answers a text frame: 0 when it
	// forwards the bytes (ours), else the close code (websockify: 1003).
	textCloseCode int
}

// proc is a process the fixtures started, in its own process group.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

func startProc(name string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(workDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = workDir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "HOME="+workDir, "XDG_CONFIG_HOME="+workDir, "XDG_DATA_HOME="+workDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// waitListening waits until addr accepts connections, bounded.
func (p *proc) waitListening(addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before listening on %s:\n%s", p.name, addr, p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s is not listening on %s after 30s:\n%s", p.name, addr, p.logTail())
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// stop asks the process group to end (Caddy: graceful stop, closing
// tunnels with 1001) and kills it after 10 s.
func (p *proc) stop(sig syscall.Signal) error {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		return fmt.Errorf("%s did not stop within 10s of %v", p.name, sig)
	}
}

// freeAddr is a loopback address on a port reserved (testcaddy) until the
// test binary exits: the fixtures live that long.
func freeAddr() (string, error) {
	ports, _, err := testcaddy.ReservePorts(1)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0]), nil
}

// retryOnPortClash retries start when the port it picked was taken, by a
// process outside this suite, between picking and binding.
func retryOnPortClash(start func() error) error {
	var err error
	for range 5 {
		if err = start(); err == nil || !testcaddy.AddrInUse(err) {
			return err
		}
	}
	return err
}

// tunnelUnreachableCode is the close code websocket_tunnel documents for an
// upstream it cannot dial (tunnel.CloseUnreachable: 1011, because common
// clients, gorilla among them, reject 1014 "bad gateway" as invalid).
const tunnelUnreachableCode = 1011

// caddyfile is the site our tunnel is tested with: one route per upstream.
const caddyfile = `{
	admin 127.0.0.1:{admin}
	auto_https off
	persist_config off
}

http://127.0.0.1:{port} {
	bind 127.0.0.1
	websocket_tunnel /echo {echo}
	websocket_tunnel /eof {eof}
	websocket_tunnel /dead {dead}
	respond "not a tunnel" 404
}
`

var fx struct {
	once       sync.Once
	err        error
	echo       *echoUpstream
	eof        *eofUpstream
	dead       string
	caddy      *proc
	websockify []*proc
	ours       *peer
	ref        *peer  // nil when websockify is missing
	refMissing string // why ref is nil
}

// fixtures starts, once per test binary, the upstreams, our Caddy and three
// websockify processes (one per upstream: it has one target per process).
func fixtures(t *testing.T) {
	t.Helper()
	fx.once.Do(func() { fx.err = startFixtures() })
	if fx.err != nil {
		t.Fatalf("starting the peers: %v", fx.err)
	}
}

func startFixtures() error {
	var err error
	if fx.echo, err = startEchoUpstream(); err != nil {
		return err
	}
	if fx.eof, err = startEOFUpstream(); err != nil {
		return err
	}
	if fx.dead, err = deadAddr(); err != nil {
		return err
	}
	var site string
	err = retryOnPortClash(func() error {
		var admin string
		site, _ = freeAddr()
		admin, _ = freeAddr()
		_, sitePort, _ := net.SplitHostPort(site)
		_, adminPort, _ := net.SplitHostPort(admin)
		cfg := strings.NewReplacer("{admin}", adminPort, "{port}", sitePort,
			"{echo}", fx.echo.addr(), "{eof}", fx.eof.addr(), "{dead}", fx.dead).Replace(caddyfile)
		cfgPath := filepath.Join(workDir, "Caddyfile")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return err
		}
		if fx.caddy, err = startProc("caddy", caddyBin, "run", "--config", cfgPath, "--adapter", "caddyfile"); err != nil {
			return err
		}
		return fx.caddy.waitListening(site)
	})
	if err != nil {
		return err
	}
	base := "ws://" + site
	fx.ours = &peer{name: "caddyws", echoURL: base + "/echo", eofURL: base + "/eof", deadURL: base + "/dead",
		deadCodes: []int{tunnelUnreachableCode}, base64FirstStatus: 101}

	if _, err := exec.LookPath("websockify"); err != nil {
		fx.refMissing = "websockify is not installed (apt-get install websockify; .ci/run installs it): " +
			"the reference-peer half of the interop suite DID NOT RUN"
		return nil
	}
	urls := map[string]string{}
	for _, u := range []struct{ name, target string }{{"echo", fx.echo.addr()}, {"eof", fx.eof.addr()}, {"dead", fx.dead}} {
		var listen string
		err := retryOnPortClash(func() error {
			listen, _ = freeAddr()
			p, err := startProc("websockify-"+u.name, "websockify", listen, u.target)
			if err != nil {
				return err
			}
			fx.websockify = append(fx.websockify, p)
			return p.waitListening(listen)
		})
		if err != nil {
			return err
		}
		urls[u.name] = "ws://" + listen + "/"
	}
	fx.ref = &peer{name: "websockify", echoURL: urls["echo"], eofURL: urls["eof"], deadURL: urls["dead"],
		deadCodes: []int{1011}, base64FirstStatus: 400, textCloseCode: 1003}
	return nil
}

// peers returns the peers a case runs against; a missing websockify is
// reported loudly by the websockify subtests, which skip.
func peers() []*peer {
	ref := fx.ref
	if ref == nil {
		ref = &peer{name: "websockify"}
	}
	return []*peer{fx.ours, ref}
}

// forEachPeer runs f as a subtest per peer.
func forEachPeer(t *testing.T, f func(t *testing.T, p *peer)) {
	fixtures(t)
	for _, p := range peers() {
		t.Run(p.name, func(t *testing.T) {
			if p.echoURL == "" {
				t.Skip("SKIPPED LOUDLY: " + fx.refMissing)
			}
			f(t, p)
		})
	}
}

// stopFixtures stops every process and fails the run if the race-enabled
// Caddy reported a data race or did not stop cleanly.
func stopFixtures() error {
	var errs []error
	for _, p := range fx.websockify {
		errs = append(errs, p.stop(syscall.SIGTERM))
	}
	if fx.caddy != nil {
		errs = append(errs, fx.caddy.stop(syscall.SIGINT))
		if b, _ := os.ReadFile(fx.caddy.log); bytes.Contains(b, []byte("DATA RACE")) {
			errs = append(errs, fmt.Errorf("the race-enabled caddy reported a data race:\n%s", b))
		}
	}
	errs = append(errs, stopExecPeers()...)
	if fx.echo != nil {
		fx.echo.ln.Close()
	}
	if fx.eof != nil {
		fx.eof.ln.Close()
	}
	return errors.Join(errs...)
}
