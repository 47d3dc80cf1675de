//go:build linux

package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// startTCPEcho serves echoConn on loopback; corrupt flips one byte of the
// echo once 100 KiB went through, which the verifier must catch.
func startTCPEcho(t *testing.T, corrupt bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if !corrupt {
		go serveEcho(ln)
		return ln.Addr().String()
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 32<<10)
				var n int
				for {
					k, err := c.Read(buf)
					if k > 0 {
						// The flipped byte must be one this read echoes: a read
						// ending exactly at the offset leaves it to the next.
						if n <= 100<<10 && n+k > 100<<10 {
							buf[100<<10-n] ^= 0x40
						}
						n += k
						if _, err := c.Write(buf[:k]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// startWSEcho is a WebSocket echo that re-frames what it echoes (it echoes
// every message in two frames), as a tunnel may.
func startWSEcho(t *testing.T) string {
	t.Helper()
	up := websocket.Upgrader{ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if typ != websocket.BinaryMessage {
				return
			}
			h := len(msg) / 2
			if c.WriteMessage(websocket.BinaryMessage, msg[:h]) != nil || c.WriteMessage(websocket.BinaryMessage, msg[h:]) != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/"
}

func TestCellsAgainstTCPAndWebSocketEchoes(t *testing.T) {
	ctx := context.Background()
	cfg := benchConfig{dur: 300 * time.Millisecond, rttDur: 200 * time.Millisecond, connDur: 200 * time.Millisecond,
		floodDur: 300 * time.Millisecond, floodMax: 8 << 20}
	for _, tg := range []target{
		{Name: "tcp", URL: "tcp://" + startTCPEcho(t, false)},
		{Name: "ws", URL: startWSEcho(t)},
	} {
		t.Run(tg.Name, func(t *testing.T) {
			out := map[string]float64{}
			if err := runCells(ctx, &peer{target: tg}, cfg, out, testWriter{t}); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"tput_64k_1", "tput_1k_8", "rtt50_64", "rtt99_16k", "conns", "conns_8", "flood_acc"} {
				if !(out[k] > 0) {
					t.Errorf("%s = %v, want > 0", k, out[k])
				}
			}
		})
	}
}

func TestThroughputCatchesACorruptedEcho(t *testing.T) {
	tg := target{Name: "corrupt", URL: "tcp://" + startTCPEcho(t, true)}
	// Long enough to reach the flipped byte on a loaded machine; the reader
	// ends the run as soon as it sees it.
	_, err := throughput(context.Background(), tg, 1<<10, 1, 20*time.Second, probe{})
	if err == nil || !strings.Contains(err.Error(), "differs at stream offset 102400") {
		t.Fatalf("got %v, want the flipped byte at offset 102400 reported", err)
	}
}

func TestProbeReadsThisProcess(t *testing.T) {
	u := probe{pid: os.Getpid()}.read()
	if u.RSS <= 0 || u.HWM < u.RSS/2 {
		t.Fatalf("probe of this process: %+v", u)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
