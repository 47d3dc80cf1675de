package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vncServer is a real X display (Xvfb) exported over VNC by x11vnc.
type vncServer struct {
	Display string // ":N"
	Port    int    // RFB port on 127.0.0.1
}

// startVNC starts Xvfb and x11vnc and stops them when the test ends. Xvfb
// runs with -noreset: without it the server resets when its last client
// leaves, and the colour xsetroot paints would be gone.
func startVNC(t *testing.T) *vncServer {
	t.Helper()
	need(t, "Xvfb", "x11vnc", "xsetroot")

	// -displayfd lets Xvfb pick a free display and tell us which.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	xvfb := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", "1024x768x24", "-noreset", "-nolisten", "tcp")
	xvfb.ExtraFiles = []*os.File{pw}
	xlog := &syncBuffer{}
	xvfb.Stdout, xvfb.Stderr = xlog, xlog
	startProc(t, xvfb, "Xvfb", xlog)
	pw.Close()
	dispc := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		dispc <- strings.TrimSpace(line)
		pr.Close()
	}()
	var display string
	select {
	case d := <-dispc:
		if d == "" {
			t.Fatalf("Xvfb did not report its display:\n%s", xlog.String())
		}
		display = ":" + d
	case <-time.After(20 * time.Second):
		t.Fatalf("Xvfb did not start within 20s:\n%s", xlog.String())
	}

	port := freePort(t)
	vlog := &syncBuffer{}
	x11vnc := exec.Command("x11vnc", "-display", display, "-rfbport", fmt.Sprint(port),
		"-localhost", "-nopw", "-forever", "-shared", "-noxdamage", "-quiet")
	x11vnc.Stdout, x11vnc.Stderr = vlog, vlog
	startProc(t, x11vnc, "x11vnc", vlog)
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second, vlog)
	return &vncServer{Display: display, Port: port}
}

// Paint fills the root window with a colour (X colour name or #rrggbb).
func (v *vncServer) Paint(t *testing.T, colour string) {
	t.Helper()
	cmd := exec.Command("xsetroot", "-solid", colour)
	cmd.Env = append(os.Environ(), "DISPLAY="+v.Display)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xsetroot -solid %s: %v\n%s", colour, err, out)
	}
}

// startProc starts a helper process in its own process group and kills the
// group when the test ends; its output is logged if the test failed.
func startProc(t *testing.T, cmd *exec.Cmd, name string, log *syncBuffer) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() && log != nil {
			t.Logf("%s output (tail):\n%s", name, tail(log.String(), 3000))
		}
	})
}

// waitTCP waits until addr accepts connections.
func waitTCP(t *testing.T, addr string, timeout time.Duration, log *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if ctx.Err() != nil {
			out := ""
			if log != nil {
				out = log.String()
			}
			t.Fatalf("%s did not accept connections within %s: %v\n%s", addr, timeout, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
