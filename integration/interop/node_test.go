package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// nodeResult is the line client.mjs prints.
type nodeResult struct {
	Status   int     `json:"status"`
	Protocol *string `json:"protocol"`
	Code     int     `json:"code"`
	Reason   string  `json:"reason"`
	Received int     `json:"received"`
	Error    string  `json:"error"`
}

type nodeConfig struct {
	URL       string   `json:"url"`
	Protocols []string `json:"protocols"`
	Mode      string   `json:"mode"`
	Send      string   `json:"send,omitempty"`
	Sizes     []int    `json:"sizes,omitempty"`
	Out       string   `json:"out,omitempty"`
	TimeoutMs int      `json:"timeoutMs"`
}

var nodeDeps struct {
	once sync.Once
	dir  string
	skip string
	err  error
}

// nodeDir returns interop/node with its dependencies (ws, eventsource) installed (npm ci from
// the lockfile when node_modules is missing). It skips loudly without node.
func nodeDir(t *testing.T) string {
	t.Helper()
	nodeDeps.once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		nodeDeps.dir = filepath.Join(filepath.Dir(file), "node")
		if _, err := exec.LookPath("node"); err != nil {
			nodeDeps.skip = "node is not installed (apt-get install nodejs npm; .ci/run installs it): " +
				"the Node `ws` half of the interop suite DID NOT RUN"
			return
		}
		installed := true
		for _, pkg := range []string{"ws", "eventsource"} {
			if _, err := os.Stat(filepath.Join(nodeDeps.dir, "node_modules", pkg, "package.json")); err != nil {
				installed = false
			}
		}
		if installed {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = nodeDeps.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			nodeDeps.err = err
			nodeDeps.skip = string(out)
		}
	})
	if nodeDeps.err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", nodeDeps.dir, nodeDeps.err, nodeDeps.skip)
	}
	if nodeDeps.skip != "" {
		t.Skip("SKIPPED LOUDLY: " + nodeDeps.skip)
	}
	return nodeDeps.dir
}

func runNode(t *testing.T, cfg nodeConfig) nodeResult {
	t.Helper()
	dir := nodeDir(t)
	cfg.TimeoutMs = 30000
	arg, _ := json.Marshal(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "client.mjs"), string(arg))
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var res nodeResult
	if jerr := json.Unmarshal(bytes.TrimSpace(out), &res); jerr != nil {
		t.Fatalf("node client: %v (output %q, stderr %q)", err, out, stderr.String())
	}
	if res.Error != "" {
		t.Logf("node client reported: %s", res.Error)
	}
	return res
}

func TestNodeWsClient(t *testing.T) {
	nodeDir(t)
	data := randomBytes(5, 3<<20)
	in := filepath.Join(t.TempDir(), "in.bin")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sizes := []int{1, 0, 125, 126, 127, 65535, 65536, 65537, 300000, 4096, 17, 1024, 20000}
	forEachPeer(t, func(t *testing.T, p *peer) {
		for _, tc := range []struct {
			name     string
			offer    []string
			protocol string
		}{{"binary offered", []string{"binary"}, "binary"}, {"none offered", nil, ""}} {
			t.Run("echo, "+tc.name, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "out.bin")
				res := runNode(t, nodeConfig{URL: p.echoURL, Protocols: tc.offer, Mode: "echo", Send: in, Sizes: sizes, Out: out})
				if res.Protocol == nil || *res.Protocol != tc.protocol {
					t.Errorf("negotiated %v, want %q", res.Protocol, tc.protocol)
				}
				got, _ := os.ReadFile(out)
				if !bytes.Equal(got, data) {
					t.Fatalf("echo through ws: %d bytes back, want the %d sent byte for byte (%+v)", len(got), len(data), res)
				}
				if res.Code != 1000 {
					t.Errorf("close code %d %q, want 1000", res.Code, res.Reason)
				}
				if end, ok := fx.echo.waitEnd(int64(len(data)), 10*time.Second); !ok || !end.eof {
					t.Errorf("upstream did not see a clean EOF after exactly %d bytes (found %v, %+v)", len(data), ok, end)
				}
			})
		}
		t.Run("only base64 offered is refused with 400", func(t *testing.T) {
			res := runNode(t, nodeConfig{URL: p.echoURL, Protocols: []string{"base64"}, Mode: "handshake"})
			if res.Status != 400 {
				t.Errorf("status %d, want 400 (%+v)", res.Status, res)
			}
		})
		t.Run("upstream EOF", func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.bin")
			res := runNode(t, nodeConfig{URL: p.eofURL, Protocols: []string{"binary"}, Mode: "recv", Out: out})
			got, _ := os.ReadFile(out)
			if !bytes.Equal(got, eofPayload) {
				t.Fatalf("got %d bytes, want the upstream's %d exactly (%+v)", len(got), len(eofPayload), res)
			}
			if res.Code != 1000 {
				t.Errorf("close code %d %q, want 1000", res.Code, res.Reason)
			}
		})
		t.Run("dead upstream", func(t *testing.T) {
			res := runNode(t, nodeConfig{URL: p.deadURL, Protocols: []string{"binary"}, Mode: "recv"})
			if !slices.Contains(p.deadCodes, res.Code) {
				t.Errorf("close code %d %q, want one of %v (%+v)", res.Code, res.Reason, p.deadCodes, res)
			}
		})
	})
}
