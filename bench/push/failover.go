//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	goredis "github.com/redis/go-redis/v9"
)

// Failover mode: one subscriber per user on -ws, a steady publish rate to
// those users (round robin, each with its own message id) on -push, and
// -kill-pid killed with SIGKILL -kill-after into the run. It reports how
// long publishes kept failing or stalling after the kill, the status
// counts, and the accepted (2xx) publishes that never reached their
// subscriber.
var (
	failover    = flag.Bool("failover", false, "failover mode: steady publishes while -kill-pid is killed (see -kill-after, -run-for)")
	killPid     = flag.Int("kill-pid", 0, "failover mode: the broker server process to SIGKILL")
	killAfter   = flag.Duration("kill-after", 3*time.Second, "failover mode: when to kill -kill-pid")
	runFor      = flag.Duration("run-for", 20*time.Second, "failover mode: how long to publish")
	stallAfter  = flag.Duration("stall", time.Second, "failover mode: a publish answered later than this counts as not yet recovered")
	redisOKAddr = flag.String("redis-ok", "", "failover mode: a surviving Redis Cluster node to poll for cluster_state:ok after the kill")
)

type failoverPublish struct {
	sent, done time.Time
	status     int // 0: transport error
	user, id   string
	answer     string // the start of a failure's answer
}

type failoverResult struct {
	Label                        string
	Users                        int
	Rate                         float64
	Publishes                    int
	Status                       map[string]int
	FirstFailure                 map[string]string // per status, the first failure's answer
	KillToOKms                   float64           `json:",omitempty"` // Redis: kill to cluster_state:ok
	KillToSteadyMs, OKToSteadyMs float64
	MaxPublishMs                 float64
	Accepted, Lost               int
	Load1                        float64
}

func runFailover(ctx context.Context, c config) error {
	r := failoverResult{Label: c.label, Users: c.plan.users, Rate: c.plan.rate, Status: map[string]int{}, FirstFailure: map[string]string{}, Load1: loadAvg()}
	if c.plan.rate <= 0 || *killPid == 0 {
		return fmt.Errorf("failover mode needs -rate > 0 and -kill-pid")
	}
	var mu sync.Mutex
	got := map[string]bool{} // user + "/" + id received
	var conns []*websocket.Conn
	defer func() {
		for _, ws := range conns {
			_ = ws.Close()
		}
	}()
	for u := 0; u < c.plan.users; u++ {
		user := fmt.Sprint("u", u)
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, c.ws, nil)
		if err != nil {
			return fmt.Errorf("subscriber %s: %w", user, err)
		}
		conns = append(conns, ws)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"connect","token":"`+user+`"}`)); err != nil {
			return err
		}
		go func() {
			for {
				_, b, err := ws.ReadMessage()
				if err != nil {
					return
				}
				var f struct{ Type, ID string }
				if json.Unmarshal(b, &f) == nil && f.Type == "message" {
					mu.Lock()
					got[user+"/"+f.ID] = true
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(time.Second) // subscriptions reach the broker
	client := &http.Client{Timeout: 15 * time.Second}
	var pubs []*failoverPublish
	var wg sync.WaitGroup
	start := time.Now()
	killAt := start.Add(*killAfter)
	killed := false
	okAt := make(chan time.Time, 1)
	interval := time.Duration(float64(time.Second) / c.plan.rate)
	for j := 0; time.Since(start) < *runFor && ctx.Err() == nil; j++ {
		if d := time.Until(start.Add(time.Duration(j) * interval)); d > 0 {
			time.Sleep(d)
		}
		if !killed && time.Now().After(killAt) {
			if err := syscall.Kill(*killPid, syscall.SIGKILL); err != nil {
				return fmt.Errorf("killing %d: %w", *killPid, err)
			}
			killAt, killed = time.Now(), true
			logf("killed %d", *killPid)
			if *redisOKAddr != "" {
				go waitRedisOK(ctx, *redisOKAddr, okAt)
			}
		}
		p := &failoverPublish{user: fmt.Sprint("u", j%c.plan.users), id: fmt.Sprint("f", j)}
		pubs = append(pubs, p)
		wg.Go(func() {
			body := fmt.Sprintf(`{"id":%q,"userId":%q,"message":%d}`, p.id, p.user, j)
			p.sent = time.Now()
			p.status, p.answer = postStatus(ctx, client, c.plan.url, c.plan.key, body)
			p.done = time.Now()
		})
	}
	wg.Wait()
	deadline := time.Now().Add(c.drain)
	r.Publishes = len(pubs)
	for _, p := range pubs {
		if p.status/100 == 2 {
			r.Accepted++
		}
	}
	for time.Now().Before(deadline) {
		mu.Lock()
		n := 0
		for _, p := range pubs {
			if p.status/100 == 2 && got[p.user+"/"+p.id] {
				n++
			}
		}
		mu.Unlock()
		if n == r.Accepted {
			break
		}
		r.Lost = r.Accepted - n
		time.Sleep(100 * time.Millisecond)
	}
	if time.Now().After(deadline) {
		logf("drain bound reached with %d accepted publishes not delivered", r.Lost)
	} else {
		r.Lost = 0
	}
	// Recovered: the end of the last publish sent after the kill that
	// failed or took longer than -stall.
	steady := killAt
	for _, p := range pubs {
		lat := p.done.Sub(p.sent)
		r.MaxPublishMs = max(r.MaxPublishMs, ms(lat))
		k := fmt.Sprint(p.status)
		if p.status == 0 {
			k = "error"
		}
		r.Status[k]++
		if _, ok := r.FirstFailure[k]; !ok && p.status/100 != 2 {
			r.FirstFailure[k] = p.answer
		}
		if p.done.After(killAt) && (p.status/100 != 2 || lat > *stallAfter) && p.done.After(steady) {
			steady = p.done
		}
	}
	r.KillToSteadyMs = ms(steady.Sub(killAt))
	select {
	case t := <-okAt:
		r.KillToOKms = ms(t.Sub(killAt))
		r.OKToSteadyMs = ms(steady.Sub(t))
	default:
	}
	fmt.Printf("%s users=%d rate=%.0f/s publishes=%d status=%v | kill->steady %.0fms", r.Label, r.Users, r.Rate, r.Publishes, fmtStatus(r.Status), r.KillToSteadyMs)
	if r.KillToOKms > 0 {
		fmt.Printf(" (kill->cluster_state:ok %.0fms, ok->steady %.0fms)", r.KillToOKms, r.OKToSteadyMs)
	}
	fmt.Printf(" | max publish %.0fms | accepted %d, lost %d | load1 %.2f | first failures %v\n", r.MaxPublishMs, r.Accepted, r.Lost, r.Load1, r.FirstFailure)
	if c.jsonOut != "" {
		f, err := os.OpenFile(c.jsonOut, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := json.NewEncoder(f).Encode(&r); err != nil {
			return err
		}
	}
	if r.Lost > 0 {
		return fmt.Errorf("%d accepted publishes were not delivered", r.Lost)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtStatus(m map[string]int) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	var b strings.Builder
	for i, k := range ks {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%d", k, m[k])
	}
	return b.String()
}

// postStatus publishes body and returns the HTTP status (0: no answer)
// and the start of the answer.
func postStatus(ctx context.Context, c *http.Client, url, key, body string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// waitRedisOK polls addr until it reports cluster_state:ok again after
// having reported it not ok (or 30s pass).
func waitRedisOK(ctx context.Context, addr string, out chan<- time.Time) {
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	sawFail := false
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		s, err := c.ClusterInfo(ctx).Result()
		ok := err == nil && strings.Contains(s, "cluster_state:ok")
		if !ok {
			sawFail = true
		} else if sawFail {
			out <- time.Now()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
