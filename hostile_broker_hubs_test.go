package caddyws

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// startRedis runs a throwaway redis-server on a low loopback port for one
// test; it skips loudly, by name, when redis-server is not installed.
func startRedis(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("SKIPPING: redis-server is not on PATH (apt-get install redis-server; .ci/run installs it)")
	}
	port := lowPorts(t, 1)[0]
	dir := t.TempDir()
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--dir", dir, "--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if out, err := exec.Command("redis-cli", "-p", fmt.Sprint(port), "ping").CombinedOutput(); err == nil && strings.TrimSpace(string(out)) == "PONG" {
			return addr
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server on %s not ready in 10s:\n%s", addr, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// twoBrokerSites are two sites on two ports whose handlers use one Redis
// server with the same prefix; %[1]s is site A's hub line, %[2]s site B's.
const twoBrokerSites = `http://localhost:@HTTP@ {
	websocket_push /ws {
		%[1]s
		auth token_is_user
		broker redis redis://@REDIS@
	}
	websocket_push /push {
		%[1]s
		publish_key k
	}
}
http://localhost:@EXTRA@ {
	websocket_push /ws {
		%[2]s
		auth token_is_user
		broker redis redis://@REDIS@
	}
	websocket_push /push {
		%[2]s
		publish_key k
	}
}`

// TestPushHubsOnOneBrokerServerStayApart: hubs that share a broker server
// and prefix see only their own streams. Without hub lines (each site's
// private hub) and with two different names, a broadcast and a user message
// published on site A never reach site B's subscriber through the broker;
// the same name on both sites shares (the positive control).
func TestPushHubsOnOneBrokerServerStayApart(t *testing.T) {
	addr := startRedis(t)
	for _, tt := range []struct {
		name         string
		hubA, hubB   string
		wantB        bool
		wantDelivery int
	}{
		{"unnamed hubs", "", "", false, 0},
		{"two names", "hub one", "hub two", false, 0},
		{"one name on both", "hub same", "hub same", true, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sites := strings.ReplaceAll(fmt.Sprintf(twoBrokerSites, tt.hubA, tt.hubB), "@REDIS@", addr)
			tc, portB := pushCaddy(t, sites)
			sub := func(port int, user string) *websocket.Conn {
				c := dialPush(t, fmt.Sprintf("ws://localhost:%d/ws", port), nil)
				sendJSON(t, c, fmt.Sprintf(`{"type":"connect","token":%q}`, user))
				expectType(t, c, "connected")
				return c
			}
			b := sub(portB, "bob")
			time.Sleep(200 * time.Millisecond) // the broker subscription settles
			pubA := fmt.Sprintf("http://localhost:%d/push", tc.HTTPPort)
			if n := mustPublish(t, pubA, "k", `{"broadcast":true,"message":"from A"}`); n != tt.wantDelivery {
				t.Errorf("broadcast on A: delivered %d on this node, want %d", n, tt.wantDelivery)
			}
			mustPublish(t, pubA, "k", `{"userId":"bob","message":"bob from A"}`)
			if tt.wantB {
				expectType(t, b, "message")
				expectType(t, b, "message")
				return
			}
			expectSilence(t, b, time.Second)
		})
	}
}
