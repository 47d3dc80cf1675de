//go:build linux

package main

import (
	"context"
	"expvar"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// startEchoServer is a WebSocket echo in this process; corrupt flips a
// byte of every tenth message.
func startEchoServer(t *testing.T, corrupt bool) string {
	t.Helper()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		if r.URL.Path == "/session" {
			_ = c.WriteMessage(websocket.TextMessage, []byte("ready"))
		}
		for i := 0; ; i++ {
			typ, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			if corrupt && i%10 == 9 && len(b) > 0 {
				b[len(b)/2] ^= 1
			}
			if err := c.WriteMessage(typ, b); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func TestCellsMeasureAnEchoServer(t *testing.T) {
	base := startEchoServer(t, false)
	ctx := context.Background()
	r, err := sessions(ctx, base+"/session", 2, 300*time.Millisecond)
	if err != nil || r.count == 0 || r.rate <= 0 || r.connectMs <= 0 {
		t.Fatalf("sessions: %+v, %v", r, err)
	}
	p50, p99, count, err := roundTrips(ctx, base+"/lines", websocket.TextMessage, 64, 200*time.Millisecond)
	if err != nil || count < 10 || p50 <= 0 || p99 < p50 {
		t.Fatalf("round trips: p50 %v p99 %v count %d: %v", p50, p99, count, err)
	}
	mbps, got, err := throughput(ctx, base+"/binary", 64<<10, 256<<10, 300*time.Millisecond, 64<<20)
	if err != nil || got == 0 || mbps <= 0 {
		t.Fatalf("throughput: %v MB/s, %d bytes: %v", mbps, got, err)
	}
}

func TestThroughputCatchesACorruptedEcho(t *testing.T) {
	base := startEchoServer(t, true)
	_, _, err := throughput(context.Background(), base+"/binary", 64<<10, 256<<10, 300*time.Millisecond, 64<<20)
	if err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("a corrupted echo went unnoticed: %v", err)
	}
}

// TestWebsocketdPeer runs every cell, briefly, against a real websocketd.
func TestWebsocketdPeer(t *testing.T) {
	bin, err := exec.LookPath("websocketd")
	if err != nil {
		t.Skip("SKIPPED LOUDLY: websocketd is not installed (apt-get install websocketd; .ci/run installs it)")
	}
	p, err := startWebsocketd(t.TempDir(), bin)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	cfg := config{dur: 200 * time.Millisecond, par: 2, idle: 5, maxBytes: 16 << 20, window: 256 << 10}
	for _, c := range cells {
		out := map[string]float64{}
		if err := c.run(context.Background(), p, cfg, out); err != nil {
			t.Fatalf("cell %s: %v", c.name, err)
		}
		for k, v := range out {
			// CPU is counted in 10 ms ticks: a 200 ms cell may see none.
			// The RSS delta of 5 sessions may be anything.
			cpu := strings.Contains(k, "_cpu_")
			if (cpu && v < 0) || (!cpu && v <= 0 && k != "idle_kib") {
				t.Errorf("cell %s: %s = %v", c.name, k, v)
			}
		}
	}
}

// TestCPUTimesCountProgramsRunningAndReaped: a child's CPU shows in the
// programs share while it runs and stays there once it is reaped.
func TestCPUTimesCountProgramsRunningAndReaped(t *testing.T) {
	p := &peer{pids: []int{os.Getpid()}}
	before := p.cpuTimes()
	cmd := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && p.cpuTimes().programs-before.programs < 0.05; {
		time.Sleep(50 * time.Millisecond)
	}
	running := p.cpuTimes().programs - before.programs
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	reaped := p.cpuTimes().programs - before.programs
	if running < 0.05 || reaped < running {
		t.Fatalf("programs CPU %.2fs while running, %.2fs once reaped", running, reaped)
	}
}

// TestGoMemoryReadsTheAdminMemstats reads this process's own memstats
// through the same endpoints Caddy's admin serves.
func TestGoMemoryReadsTheAdminMemstats(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/debug/vars", expvar.Handler())
	mux.HandleFunc("/debug/pprof/heap", func(w http.ResponseWriter, r *http.Request) { runtime.GC() })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	p := &peer{admin: strings.TrimPrefix(srv.URL, "http://")}
	before, err := p.goMemory()
	if err != nil || before == 0 {
		t.Fatalf("memory %d: %v", before, err)
	}
	hold := make([][]byte, 64)
	for i := range hold {
		hold[i] = make([]byte, 64<<10)
	}
	after, err := p.goMemory()
	if err != nil || after < before+3<<20 {
		t.Fatalf("4 MiB held: memory went from %d to %d: %v", before, after, err)
	}
	runtime.KeepAlive(hold)
	if _, err := (&peer{}).goMemory(); err == nil {
		t.Fatal("a peer without an admin endpoint gave a figure")
	}
}
