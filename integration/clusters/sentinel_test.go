package clusters

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// TestRedisSentinelFailoverLosesNothing: the master behind Sentinel is
// killed, the replica is promoted; every publish accepted before or after
// reaches its subscriber.
func TestRedisSentinelFailoverLosesNothing(t *testing.T) {
	needRedis(t)
	master := startRedis(t)
	replica := startRedis(t, "--replicaof", "127.0.0.1", fmt.Sprint(master.port))
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	sport := freePort(t)
	cfg := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster 127.0.0.1 %d 1\n"+
		"sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n", sport, dir, master.port)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel := &redisProc{port: sport, dir: dir}
	sentinel.cmd = execSentinel(conf, filepath.Join(dir, "sentinel.log"))
	if err := sentinel.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sentinel.kill)
	sc := goredis.NewSentinelClient(&goredis.Options{Addr: sentinel.addr(), MaxRetries: -1})
	defer sc.Close()
	masterAddr := func() string {
		a, _ := sc.GetMasterAddrByName(context.Background(), "mymaster").Result()
		if len(a) != 2 {
			return ""
		}
		return a[0] + ":" + a[1]
	}
	waitSynced(t, replica)
	deadline := time.Now().Add(10 * time.Second)
	for masterAddr() != master.addr() {
		if time.Now().After(deadline) {
			t.Fatal("sentinel does not report the master in 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	block := "broker redis {\n\t\t\taddrs " + sentinel.addr() + "\n\t\t\tmaster_name mymaster\n\t\t}"
	subNode := startNode(t, "subscribers", block)
	pubNode := startNode(t, "publishers", block)
	var subs []*subscriber
	for i := 0; i < 10; i++ {
		subs = append(subs, subscribe(t, subNode, fmt.Sprint("s", i)))
	}
	ready(t, pubNode, subs)
	for _, s := range subs {
		if code, body := publish(pubNode, s.user, "before-"+s.user); code != http.StatusOK {
			t.Fatalf("publish: %d %s", code, body)
		}
	}
	waitSynced(t, replica) // asynchronous replication: only what reached the replica survives
	master.kill()
	killed := time.Now()
	deadline = time.Now().Add(30 * time.Second)
	for masterAddr() != replica.addr() {
		if time.Now().After(deadline) {
			t.Fatal("sentinel did not promote the replica in 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	promoted := time.Now()
	var firstOK time.Duration
	for _, s := range subs {
		for {
			code, _ := publish(pubNode, s.user, "after-"+s.user)
			if code == http.StatusOK {
				break
			}
			if time.Since(promoted) > 10*time.Second {
				t.Fatalf("publishes still fail 10s after the promotion: %d", code)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if firstOK == 0 {
			firstOK = time.Since(killed)
		}
	}
	t.Logf("replica promoted %v after the kill; first accepted publish %v after the kill",
		promoted.Sub(killed).Round(10*time.Millisecond), firstOK.Round(10*time.Millisecond))
	waitAll(t, subs, 10*time.Second, func(s *subscriber) string { return "after-" + s.user })
	waitAll(t, subs, time.Second, func(s *subscriber) string { return "before-" + s.user })
}

func waitSynced(t *testing.T, replica *redisProc) {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: replica.addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		info, _ := c.Info(context.Background(), "replication").Result()
		if containsAll(info, "master_link_status:up", "master_sync_in_progress:0") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not synced in 15s:\n%s", info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
