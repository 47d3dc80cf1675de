//go:build linux

package caddyws

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/gorilla/websocket"
)

// markedProcesses lists the processes whose environment holds marker, and
// the zombie children of this process.
func markedProcesses(marker string) (live []int, zombies []int) {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	self := strconv.Itoa(os.Getpid())
	for _, d := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(d))
		if stat, err := os.ReadFile(d + "/stat"); err == nil {
			// pid (comm) state ppid ...
			if i := bytes.LastIndexByte(stat, ')'); i > 0 {
				f := strings.Fields(string(stat[i+1:]))
				if len(f) > 1 && f[0] == "Z" && f[1] == self {
					zombies = append(zombies, pid)
				}
			}
		}
		if env, err := os.ReadFile(d + "/environ"); err == nil && bytes.Contains(env, []byte(marker)) {
			live = append(live, pid)
		}
	}
	return live, zombies
}

// threads is this process's OS thread count.
func threads() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

func TestExecHygiene500DroppedSessionsLeaveNoProcessNoZombie(t *testing.T) {
	sh := needProgram(t, "sh")
	marker := fmt.Sprintf("CADDYWS_HYGIENE=%d", os.Getpid())
	env := strings.Replace(marker, "=", " ", 1)
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /chatty {
		exec `+sh+` -c "while :; do echo line; done" {
			env `+env+`
			kill_grace 200ms
			allow_anonymous
		}
	}
	websocket_tunnel /stubborn {
		exec `+sh+` -c "trap '' INT HUP; echo up; while :; do sleep 1; done" {
			env `+env+`
			kill_grace 200ms
			allow_anonymous
		}
	}
	websocket_tunnel /forker {
		exec `+sh+` -c "sleep 60 & echo up; wait" {
			env `+env+`
			kill_grace 200ms
			allow_anonymous
		}
	}
}`)
	mustTunnel(t, tc.WSURL("/chatty"), nil).Close() // warm up
	base := settle(runtimeGoroutines, 0, 500*time.Millisecond)
	paths := []string{"/chatty", "/stubborn", "/forker"}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range 500 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var c *websocket.Conn
			var msg string
			for try := 0; c == nil && try < 3; try++ { // a loaded machine may miss a handshake timeout
				c, msg = dialQuiet(tc.WSURL(paths[i%3]))
			}
			if c == nil {
				t.Errorf("session %d: %s", i, msg)
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _, _ = c.ReadMessage() // the program runs and writes
			_ = c.NetConn().Close()   // the client vanishes without a close frame
		}()
	}
	wg.Wait()
	var live, zombies []int
	deadline := time.Now().Add(20 * time.Second)
	for {
		live, zombies = markedProcesses(marker)
		if len(live)+len(zombies) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(live)+len(zombies) > 0 {
		t.Fatalf("after 500 dropped sessions: %d processes left (%v), %d zombies", len(live), live[:min(len(live), 10)], len(zombies))
	}
	if n := settle(runtimeGoroutines, base+5, 10*time.Second); n > base+5 {
		t.Fatalf("goroutines %d, baseline %d\n%s", n, base, goroutineDump())
	}
}

// TestExecIdleSessionsHoldNoThread keeps 200 idle programs and reports the
// threads and heap they cost (figures in the test log, -v).
func TestExecIdleSessionsHoldNoThread(t *testing.T) {
	cat := needProgram(t, "cat")
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /cat {
		exec `+cat+` {
			allow_anonymous
		}
	}
}`)
	c := mustTunnel(t, tc.WSURL("/cat"), nil)
	_ = c.WriteMessage(websocket.TextMessage, []byte("warm"))
	readText(t, c)
	th0, heap0 := threads(), heapInuse()
	const n = 200
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		var msg string
		if conns[i], msg = dialQuiet(tc.WSURL("/cat")); conns[i] == nil {
			t.Fatalf("session %d: %s", i, msg)
		}
		_ = conns[i].WriteMessage(websocket.TextMessage, []byte("x"))
		readText(t, conns[i])
	}
	th1, heap1 := threads(), heapInuse()
	t.Logf("%d idle exec sessions: threads %d -> %d; heap in use %.1f KiB per session (server end and a default gorilla client end, both in this process)",
		n, th0, th1, float64(int64(heap1)-int64(heap0))/n/1024)
	if th1-th0 > n/4 {
		t.Fatalf("threads grew by %d for %d idle sessions: a thread is held per session", th1-th0, n)
	}
	for _, c := range conns {
		_ = c.Close()
	}
}

func TestExecBackpressureFromAProgramThatNeverReads(t *testing.T) {
	sleep := needProgram(t, "sleep")
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /deaf {
		exec `+sleep+` 60 {
			mode binary
			kill_grace 200ms
			allow_anonymous
		}
	}
}`)
	c := mustTunnel(t, tc.WSURL("/deaf"), nil)
	before := heapInuse()
	chunk := make([]byte, 1<<20)
	sent := 0
	_ = c.SetWriteDeadline(time.Now().Add(3 * time.Second))
	for sent < 256<<20 {
		if err := c.WriteMessage(websocket.BinaryMessage, chunk); err != nil {
			break // blocked: the server stopped reading
		}
		sent += len(chunk)
	}
	grown := int64(heapInuse()) - int64(before)
	t.Logf("client wrote %d MiB before blocking; heap grew %d KiB", sent>>20, grown>>10)
	if sent >= 256<<20 {
		t.Fatal("256 MiB accepted for a program that reads nothing: no backpressure")
	}
	if grown > 16<<20 {
		t.Fatalf("heap grew %d MiB while the program read nothing", grown>>20)
	}
	_ = runtime.NumGoroutine
}

// dialQuiet opens a WebSocket, returning the error text instead of failing.
func dialQuiet(url string) (*websocket.Conn, string) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, err.Error()
	}
	return c, ""
}

func TestExecSurvivesReloadAndStopKillsTheGroup(t *testing.T) {
	sh := needProgram(t, "sh")
	marker := fmt.Sprintf("CADDYWS_STOP=%d", os.Getpid())
	site := func(body string) string {
		return `http://localhost:@HTTP@ {
	websocket_tunnel /sh {
		exec ` + sh + ` -c "trap '' INT HUP; sleep 60 & while read l; do echo \"$l\"; done" {
			env ` + strings.Replace(marker, "=", " ", 1) + `
			kill_grace 300ms
			allow_anonymous
		}
	}
	respond "` + body + `"
}`
	}
	tc := startTunnelCaddy(t, site("one"))
	c := mustTunnel(t, tc.WSURL("/sh"), nil)
	roundTrip := func(l string) {
		t.Helper()
		_ = c.WriteMessage(websocket.TextMessage, []byte(l))
		if got := readText(t, c); got != l {
			t.Fatalf("got %q, want %q", got, l)
		}
	}
	roundTrip("before reload")
	tc.Reload(site("two"))
	roundTrip("after reload")
	stopped := make(chan struct{})
	go func() {
		_ = caddy.Stop()
		close(stopped)
	}()
	expectTunnelClose(t, c, 1001, 5*time.Second)
	<-stopped
	deadline := time.Now().Add(5 * time.Second)
	for {
		live, zombies := markedProcesses(marker)
		if len(live)+len(zombies) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after stop: processes %v, zombies %v", live, zombies)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
