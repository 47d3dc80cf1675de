package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyws/caddyws/internal/testcaddy"
)

// caddyProc is Caddy running as its own process (testcaddy.RunProcess: the
// binary users build), listening on reserved loopback ports, with its own
// storage so its internal CA is new for every test.
type caddyProc struct {
	t         *testing.T
	HTTPPort  int
	HTTPSPort int
	AdminPort int
	Storage   string
	Config    string // the Caddyfile it runs
	proc      *testcaddy.Process
}

// freePort returns a port reserved for this test.
func freePort(t testing.TB) int {
	t.Helper()
	return testcaddy.Port(t)
}

// startCaddy runs Caddy with the site blocks given (global options are added
// here). The sites may use @HTTP@, @HTTPS@, @ADMIN@, @ROOT@ (the repository)
// and any extra markers in vars. It waits until https://localhost:@HTTPS@/
// answers and stops Caddy when the test ends.
func startCaddy(t *testing.T, sites string, vars map[string]string) *caddyProc {
	t.Helper()
	return launchCaddy(t, func(cp *caddyProc) string {
		return cp.Expand(`{
	admin 127.0.0.1:@ADMIN@
	persist_config off
	http_port @HTTP@
	https_port @HTTPS@
	default_bind 127.0.0.1
	skip_install_trust
	storage file_system @STORAGE@
	grace_period 1s
	servers {
		protocols h1 h2
	}
}
`+sites, vars)
	})
}

// errPortTaken: a port was taken, by a process outside this suite, before
// Caddy could bind it.
var errPortTaken = errors.New("a port was taken before caddy could bind it")

// launchCaddy picks ports, builds the complete Caddyfile for them, runs Caddy
// and waits until it serves HTTPS on cp.HTTPSPort; it tries again with other
// ports when one was taken meanwhile.
func launchCaddy(t *testing.T, build func(cp *caddyProc) string) *caddyProc {
	t.Helper()
	var cp *caddyProc
	testcaddy.WithPorts(t, 3, func(ports []int) error {
		cp = &caddyProc{t: t, HTTPPort: ports[0], HTTPSPort: ports[1], AdminPort: ports[2], Storage: t.TempDir()}
		cfg := build(cp)
		err := cp.run(cfg)
		if err == nil || errors.Is(err, errPortTaken) {
			return err
		}
		log := ""
		if cp.proc != nil {
			log = testcaddy.Tail(cp.proc.Log(), 6000)
		}
		return fmt.Errorf("%w\ncaddy config:\n%s\ncaddy log (tail):\n%s", err, cfg, log)
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caddy config:\n%s\ncaddy log (tail):\n%s", cp.Config, testcaddy.Tail(cp.proc.Log(), 6000))
		}
	})
	return cp
}

// run starts Caddy with a complete Caddyfile and waits until it serves HTTPS
// on cp.HTTPSPort.
func (cp *caddyProc) run(cfg string) error {
	cp.Config = cfg
	var err error
	if cp.proc, err = testcaddy.RunProcess(cp.t, cfg, testcaddy.ProcessOptions{}); err != nil {
		return err
	}
	return cp.waitReady()
}

// Expand replaces the markers in s.
func (cp *caddyProc) Expand(s string, vars map[string]string) string {
	pairs := []string{
		"@HTTP@", fmt.Sprint(cp.HTTPPort), "@HTTPS@", fmt.Sprint(cp.HTTPSPort),
		"@ADMIN@", fmt.Sprint(cp.AdminPort), "@ROOT@", repoRoot, "@STORAGE@", cp.Storage,
	}
	for k, v := range vars {
		pairs = append(pairs, k, v)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// stop ends Caddy now (it also ends with the test).
func (cp *caddyProc) stop() { cp.proc.Stop() }

// waitReady polls the HTTPS site until it answers (the internal CA has issued
// the certificate) or Caddy exits.
func (cp *caddyProc) waitReady() error {
	deadline := time.Now().Add(30 * time.Second)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}, // only a readiness probe
	}}
	defer c.CloseIdleConnections()
	for time.Now().Before(deadline) {
		select {
		case <-cp.proc.Exited():
			if cp.proc.PortTaken() {
				return errPortTaken
			}
			return errors.New("caddy exited early")
		default:
		}
		resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/", cp.HTTPSPort))
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	cp.stop()
	return errors.New("caddy did not answer on https within 30s")
}

// RootCAFile is the internal CA's root certificate (PEM), for clients that
// verify the chain instead of skipping verification.
func (cp *caddyProc) RootCAFile() string {
	return filepath.Join(cp.Storage, "pki", "authorities", "local", "root.crt")
}

// TLSConfig trusts only Caddy's internal CA, as a client that installed it would.
func (cp *caddyProc) TLSConfig() *tls.Config {
	cp.t.Helper()
	pem, err := os.ReadFile(cp.RootCAFile())
	if err != nil {
		cp.t.Fatalf("reading caddy's root CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		cp.t.Fatal("caddy's root CA is not PEM")
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// HTTPClient is an HTTPS client that verifies Caddy's certificate and
// reaches "localhost" on loopback.
func (cp *caddyProc) HTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: cp.TLSConfig(),
		DialContext:     loopbackDial,
	}}
}

// loopbackDial dials "localhost:port" on 127.0.0.1, where Caddy listens.
func loopbackDial(ctx context.Context, network, addr string) (net.Conn, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	return (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", "127.0.0.1:"+port)
}

// URL is https://localhost:<https port><path>.
func (cp *caddyProc) URL(path string) string {
	return fmt.Sprintf("https://localhost:%d%s", cp.HTTPSPort, path)
}

// WSURL is wss://localhost:<https port><path>.
func (cp *caddyProc) WSURL(path string) string {
	return fmt.Sprintf("wss://localhost:%d%s", cp.HTTPSPort, path)
}

// Admin calls Caddy's admin API.
func (cp *caddyProc) Admin(method, path, body string) (int, string) {
	cp.t.Helper()
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", cp.AdminPort, path), strings.NewReader(body))
	if err != nil {
		cp.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		cp.t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Reload loads a new Caddyfile through the admin API, as `caddy reload` does.
func (cp *caddyProc) Reload(cfg string) {
	cp.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", cp.AdminPort), strings.NewReader(cfg))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		cp.t.Fatalf("reloading: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		cp.t.Fatalf("reloading: %d %s", resp.StatusCode, b)
	}
	testcaddy.WaitOneListener(cp.t, cp.HTTPPort, cp.HTTPSPort)
	cp.Config = cfg
}

func tail(s string, n int) string { return testcaddy.Tail(s, n) }

// syncBuffer collects a child's output for the failure report.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
