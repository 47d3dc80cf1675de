package interop

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// execPeer is a "program over WebSocket" server under test: caddyws's
// exec upstream, Debian's websocketd, or gorilla/websocket's command
// example, each running testdata/lines.sh.
type execPeer struct {
	name string
	// url is the WebSocket URL of the line program, with the query "q=1".
	url string
	// missing says why this peer could not be started (it then skips loudly).
	missing string
}

// execCaddyfile runs testdata/lines.sh as a line-mode exec upstream.
const execCaddyfile = `{
	admin 127.0.0.1:{admin}
	auto_https off
	persist_config off
}

http://127.0.0.1:{port} {
	bind 127.0.0.1
	websocket_tunnel /lines {
		exec /bin/sh {script} {
			mode lines
			allow_anonymous
		}
	}
	respond "not a tunnel" 404
}
`

var execFx struct {
	once  sync.Once
	err   error
	procs []*proc
	peers []*execPeer
}

// linesScript is the absolute path of testdata/lines.sh.
func linesScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "lines.sh")
}

// execPeers starts, once per test binary, the three servers of the line
// program: caddyws (its own Caddy process), websocketd and gorilla's
// command example (built from the gorilla module this suite depends on).
func execPeers(t *testing.T) []*execPeer {
	t.Helper()
	execFx.once.Do(func() { execFx.err = startExecPeers() })
	if execFx.err != nil {
		t.Fatalf("starting the exec peers: %v", execFx.err)
	}
	return execFx.peers
}

func startExecPeers() error {
	script := linesScript()
	ours, err := startExecCaddy(script)
	if err != nil {
		return err
	}
	execFx.peers = append(execFx.peers, ours, startWebsocketd(script), startGorillaCommand(script))
	return nil
}

func startExecCaddy(script string) (*execPeer, error) {
	var site string
	err := retryOnPortClash(func() error {
		var admin string
		site, _ = freeAddr()
		admin, _ = freeAddr()
		_, sitePort, _ := net.SplitHostPort(site)
		_, adminPort, _ := net.SplitHostPort(admin)
		cfg := strings.NewReplacer("{admin}", adminPort, "{port}", sitePort, "{script}", script).Replace(execCaddyfile)
		cfgPath := filepath.Join(workDir, "exec.Caddyfile")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return err
		}
		p, err := startProc("caddy-exec", caddyBin, "run", "--config", cfgPath, "--adapter", "caddyfile")
		if err != nil {
			return err
		}
		execFx.procs = append(execFx.procs, p)
		return p.waitListening(site)
	})
	if err != nil {
		return nil, err
	}
	return &execPeer{name: "caddyws", url: "ws://" + site + "/lines?q=1"}, nil
}

// startWebsocketd runs websocketd with the line program at every path.
func startWebsocketd(script string) *execPeer {
	p := &execPeer{name: "websocketd"}
	if _, err := exec.LookPath("websocketd"); err != nil {
		p.missing = "websocketd is not installed (apt-get install websocketd; .ci/run installs it): " +
			"the websocketd reference half of the exec interop suite DID NOT RUN"
		return p
	}
	var listen string
	err := retryOnPortClash(func() error {
		listen, _ = freeAddr()
		host, port, _ := net.SplitHostPort(listen)
		wd, err := startProc("websocketd", "websocketd", "--address="+host, "--port="+port, "--loglevel=error", "/bin/sh", script)
		if err != nil {
			return err
		}
		execFx.procs = append(execFx.procs, wd)
		return wd.waitListening(listen)
	})
	if err != nil {
		p.missing = fmt.Sprintf("websocketd did not start: %v", err)
		return p
	}
	p.url = "ws://" + listen + "/lines?q=1"
	return p
}

// startGorillaCommand builds and runs gorilla/websocket's examples/command
// server (its code, from the module cache: not a copy) with the line program.
func startGorillaCommand(script string) *execPeer {
	p := &execPeer{name: "gorilla-command"}
	bin := filepath.Join(workDir, "gorilla-command")
	build := exec.Command("go", "build", "-o", bin, "github.com/gorilla/websocket/examples/command")
	if out, err := build.CombinedOutput(); err != nil {
		p.missing = fmt.Sprintf("building gorilla's examples/command: %v\n%s", err, out)
		return p
	}
	var listen string
	err := retryOnPortClash(func() error {
		listen, _ = freeAddr()
		gp, err := startProc("gorilla-command", bin, "-addr", listen, "/bin/sh", script)
		if err != nil {
			return err
		}
		execFx.procs = append(execFx.procs, gp)
		return gp.waitListening(listen)
	})
	if err != nil {
		p.missing = fmt.Sprintf("gorilla's command example did not start: %v", err)
		return p
	}
	p.url = "ws://" + listen + "/ws?q=1"
	return p
}

// stopExecPeers stops what startExecPeers started.
func stopExecPeers() []error {
	var errs []error
	for _, p := range execFx.procs {
		errs = append(errs, p.stop(syscall.SIGTERM))
		if b, _ := os.ReadFile(p.log); bytes.Contains(b, []byte("DATA RACE")) {
			errs = append(errs, fmt.Errorf("the race-enabled %s reported a data race:\n%s", p.name, b))
		}
	}
	return errs
}
