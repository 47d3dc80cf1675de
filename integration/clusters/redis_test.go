package clusters

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddyws/caddyws/broker"
)

func needRedis(t *testing.T) {
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("SKIPPING %s: %s is not on PATH (apt-get install redis-server); CI must install it", t.Name(), bin)
		}
	}
}

// redisProc is one redis-server on a loopback port.
type redisProc struct {
	port int
	cmd  *exec.Cmd
	dir  string
}

func (p *redisProc) addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

func (p *redisProc) kill() {
	if p.cmd != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

func startRedis(t *testing.T, args ...string) *redisProc {
	t.Helper()
	p := &redisProc{port: freePort(t), dir: t.TempDir()}
	args = append([]string{"--port", fmt.Sprint(p.port), "--bind", "127.0.0.1", "--dir", p.dir,
		"--save", "", "--logfile", filepath.Join(p.dir, "redis.log")}, args...)
	p.cmd = exec.Command("redis-server", args...)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("CLUSTERS_REDIS_LOGS") != "" {
			log, _ := os.ReadFile(filepath.Join(p.dir, "redis.log"))
			t.Logf("---- redis %s ----\n%s", p.addr(), tail(string(log), 3000))
		}
	})
	c := goredis.NewClient(&goredis.Options{Addr: p.addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(p.dir, "redis.log"))
			t.Fatalf("redis-server not ready in 10s\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// redisCluster starts 3 masters and 3 replicas (node timeout 2s).
func redisCluster(t *testing.T) []*redisProc {
	t.Helper()
	var procs []*redisProc
	args := []string{"redis-cli", "--cluster", "create"}
	for i := 0; i < 6; i++ {
		p := startRedis(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
			"--cluster-port", fmt.Sprint(freePort(t)), "--appendonly", "no", "--repl-diskless-sync-delay", "0")
		procs = append(procs, p)
		args = append(args, p.addr())
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, p := range procs {
		waitClusterOK(t, p, 20*time.Second)
	}
	// A replica that has not synced yet cannot take over.
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range procs {
		c := goredis.NewClient(&goredis.Options{Addr: p.addr(), MaxRetries: -1})
		for {
			info, _ := c.Info(context.Background(), "replication").Result()
			if strings.Contains(info, "role:master") || strings.Contains(info, "master_link_status:up") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %s not synced in 20s:\n%s", p.addr(), info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = c.Close()
	}
	return procs
}

func clusterInfo(p *redisProc) string {
	c := goredis.NewClient(&goredis.Options{Addr: p.addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	s, _ := c.ClusterInfo(context.Background()).Result()
	return s
}

func waitClusterOK(t *testing.T, p *redisProc, d time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(clusterInfo(p), "cluster_state:ok") {
		if time.Now().After(deadline) {
			t.Fatalf("redis cluster not ok on %s within %v:\n%s", p.addr(), d, clusterInfo(p))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Now()
}

// waitMarkedFailed waits until p's CLUSTER NODES flags addr as fail.
func waitMarkedFailed(t *testing.T, p *redisProc, addr string, d time.Duration) {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: p.addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(d)
	for {
		nodes, _ := c.ClusterNodes(context.Background()).Result()
		for _, l := range strings.Split(nodes, "\n") {
			f := strings.Fields(l)
			if len(f) > 2 && strings.HasPrefix(f[1], addr+"@") && strings.Contains(f[2], "fail") && !strings.Contains(f[2], "fail?") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not marked failed within %v:\n%s", addr, d, nodes)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// streamKey is the history key of user u (the default prefix).
func streamKey(user string) string {
	return "caddyws:push:{" + broker.EncodeName("user:"+user) + "}:h"
}

// TestRedisClusterFailoverPublishesWithinSeconds: a master of a 3+3 Redis
// Cluster is killed; once its replica took over (cluster_state:ok), a
// publish made 2s later reaches every subscriber, none of which was
// disconnected.
func TestRedisClusterFailoverPublishesWithinSeconds(t *testing.T) {
	needRedis(t)
	procs := redisCluster(t)
	block := "broker redis {\n\t\t\taddrs " + procs[0].addr() + " " + procs[1].addr() + " " + procs[2].addr() + "\n\t\t}"
	subNode := startNode(t, "subscribers", block)
	pubNode := startNode(t, "publishers", block)

	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{procs[0].addr()}})
	defer cc.Close()
	ctx := context.Background()
	owner := map[string]string{} // user -> master address
	perMaster := map[string]int{}
	var subs []*subscriber
	for i := 0; i < 60; i++ {
		u := fmt.Sprint("u", i)
		m, err := cc.MasterForKey(ctx, streamKey(u))
		if err != nil {
			t.Fatal(err)
		}
		owner[u] = m.Options().Addr
		perMaster[owner[u]]++
		subs = append(subs, subscribe(t, subNode, u))
	}
	if len(perMaster) != 3 {
		t.Fatalf("60 users cover %d masters, want 3: %v", len(perMaster), perMaster)
	}
	ready(t, pubNode, subs)

	victim := owner["u0"]
	var victimUser string
	var survivor *redisProc
	for _, p := range procs {
		if p.addr() == victim {
			p.kill()
		} else if survivor == nil {
			survivor = p
		}
	}
	killed := time.Now()
	for u, a := range owner {
		if a == victim {
			victimUser = u
			break
		}
	}
	// Publish to a user of the dead master every 100ms, to measure.
	stop := make(chan struct{})
	measured := make(chan time.Duration, 1)
	go func() {
		var firstOK time.Duration = -1
		for i := 0; ; i++ {
			select {
			case <-stop:
				measured <- firstOK
				return
			case <-time.After(100 * time.Millisecond):
			}
			if code, _ := publish(pubNode, victimUser, fmt.Sprint("during-", i)); code == http.StatusOK && firstOK < 0 {
				firstOK = time.Since(killed)
			}
		}
	}()
	// The survivors must mark the master failed, then report ok again.
	waitMarkedFailed(t, survivor, victim, 30*time.Second)
	ok := waitClusterOK(t, survivor, 30*time.Second)
	t.Logf("cluster_state:ok %v after the kill", ok.Sub(killed).Round(10*time.Millisecond))
	time.Sleep(time.Until(ok.Add(2 * time.Second)))
	failed := 0
	for _, s := range subs {
		if code, body := publish(pubNode, s.user, "after-"+s.user); code != http.StatusOK {
			failed++
			t.Errorf("publish to %s (master %s) 2s after cluster_state:ok: %d %s", s.user, owner[s.user], code, body)
		}
	}
	close(stop)
	first := <-measured
	t.Logf("publishes to the dead master's slots: first 200 %v after the kill (%v after cluster_state:ok)",
		first.Round(10*time.Millisecond), (first - ok.Sub(killed)).Round(10*time.Millisecond))
	if failed > 0 {
		t.Fatalf("%d of %d publishes failed 2s after cluster_state:ok", failed, len(subs))
	}
	waitAll(t, subs, 3*time.Second, func(s *subscriber) string { return "after-" + s.user })
}

// TestRedisClusterFoundFromOneAddress: one cluster node's URL is enough
// (the plain client would answer MOVED for two thirds of the streams), and
// cluster off against a cluster node fails the start with a clear error.
func TestRedisClusterFoundFromOneAddress(t *testing.T) {
	needRedis(t)
	procs := redisCluster(t)
	a := startNode(t, "subscribers", "broker redis redis://"+procs[0].addr())
	b := startNode(t, "publishers", "broker redis {\n\t\t\taddrs "+procs[1].addr()+"\n\t\t}")
	var subs []*subscriber
	for i := 0; i < 30; i++ {
		subs = append(subs, subscribe(t, a, fmt.Sprint("one", i)))
	}
	ready(t, b, subs)
	for _, s := range subs {
		if code, body := publish(b, s.user, "hello-"+s.user); code != http.StatusOK {
			t.Fatalf("publish to %s: %d %s", s.user, code, body)
		}
	}
	waitAll(t, subs, 5*time.Second, func(s *subscriber) string { return "hello-" + s.user })

	_, err := runNode(t, "cluster-off", "broker redis redis://"+procs[0].addr()+" {\n\t\t\tcluster off\n\t\t}")
	if err == nil || !strings.Contains(err.Error(), "cluster off, but") {
		t.Fatalf("cluster off against a cluster node: want a failed start saying so, got %v", err)
	}
}

func execSentinel(conf, logfile string) *exec.Cmd {
	return exec.Command("redis-server", conf, "--sentinel", "--logfile", logfile)
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
