//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// publishPlan is what the publish phase sends.
type publishPlan struct {
	url, key      string
	count         int           // publishes in total
	rate          float64       // offered publishes per second (0: as fast as the workers go)
	workers       int           // concurrent HTTP publishers (keep-alive connections)
	target        string        // user | event | user+event | users | broadcast
	users, events int           // the subscribers' spread, to address them
	listSize      int           // users per publish for target users
	pad           int           // extra payload bytes
	maxDur        time.Duration // the phase stops by itself after this
}

// expectedDuration is how long the publish phase should take at the
// offered rate (with no rate: a guess of 10 s), bounded by maxDur.
func (p *publishPlan) expectedDuration() time.Duration {
	if p.rate <= 0 {
		return min(p.maxDur, 10*time.Second)
	}
	return min(p.maxDur, time.Duration(float64(p.count)/p.rate*float64(time.Second)))
}

// publishResult sums what the server answered.
type publishResult struct {
	sent, failed   int64
	delivered      int64 // sum of the "delivered" counts the server answered
	first, last    time.Time
	httpLat        histogram
	firstErr       error
	behindSchedule time.Duration // how late the last publish left compared with the offered rate
}

// body builds publish j: the stamp goes first in the message so readers
// find it without decoding JSON.
func (p *publishPlan) body(buf []byte, j int, pad []byte) []byte {
	buf = append(buf[:0], `{"message":{"t":`...)
	buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
	buf = append(buf, `,"n":`...)
	buf = strconv.AppendInt(buf, int64(j), 10)
	if len(pad) > 0 {
		buf = append(buf, `,"pad":"`...)
		buf = append(buf, pad...)
		buf = append(buf, '"')
	}
	buf = append(buf, '}')
	user := "u" + strconv.Itoa(j%p.users)
	event := "e" + strconv.Itoa((j/p.users)%p.events)
	switch p.target {
	case "user":
		buf = append(buf, `,"userId":"`+user+`"`...)
	case "event":
		buf = append(buf, `,"event":"e`+strconv.Itoa(j%p.events)+`"`...)
	case "user+event":
		buf = append(buf, `,"userId":"`+user+`","event":"`+event+`"`...)
	case "users":
		buf = append(buf, `,"userIds":[`...)
		for k := range p.listSize {
			if k > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, `"u`+strconv.Itoa((j*p.listSize+k)%p.users)+`"`...)
		}
		buf = append(buf, ']')
	case "broadcast":
		buf = append(buf, `,"broadcast":true`...)
	}
	return append(buf, '}')
}

// expectedFanout is how many subscribers publish j should reach, from the
// subscription plan alone; the run compares it with the server's count.
func expectedFanout(p *publishPlan, j, n int) int64 {
	var c int64
	for i := range n {
		u, e := i%p.users, (i/p.users)%p.events
		switch p.target {
		case "user":
			if u == j%p.users {
				c++
			}
		case "event":
			if e == j%p.events {
				c++
			}
		case "user+event":
			if u == j%p.users && e == (j/p.users)%p.events {
				c++
			}
		case "users":
			for k := range p.listSize {
				if u == (j*p.listSize+k)%p.users {
					c++
					break
				}
			}
		case "broadcast":
			c++
		}
	}
	return c
}

func runPublishers(ctx context.Context, p *publishPlan) *publishResult {
	res := &publishResult{}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        p.workers,
		MaxIdleConnsPerHost: p.workers,
		MaxConnsPerHost:     p.workers,
		DisableCompression:  true,
		IdleConnTimeout:     30 * time.Second,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	pad := bytes.Repeat([]byte("x"), p.pad)

	ctx, cancel := context.WithTimeout(ctx, p.maxDur)
	defer cancel()
	jobs := make(chan int, p.workers)
	var mu sync.Mutex
	var sent, failed, delivered atomic.Int64
	var wg sync.WaitGroup
	for range p.workers {
		wg.Go(func() {
			var buf []byte
			for j := range jobs {
				buf = p.body(buf, j, pad)
				start := time.Now()
				n, err := publishOne(ctx, client, p.url, p.key, buf)
				res.httpLat.record(time.Since(start))
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if res.firstErr == nil {
						res.firstErr = fmt.Errorf("publish %d: %w", j, err)
					}
					mu.Unlock()
					continue
				}
				sent.Add(1)
				delivered.Add(n)
			}
		})
	}
	res.first = time.Now()
	var interval time.Duration
	if p.rate > 0 {
		interval = time.Duration(float64(time.Second) / p.rate)
	}
pace:
	for j := range p.count {
		if interval > 0 {
			due := res.first.Add(time.Duration(j) * interval)
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					break pace
				}
			}
		}
		select {
		case jobs <- j:
		case <-ctx.Done():
			break pace
		}
	}
	if interval > 0 {
		res.behindSchedule = time.Since(res.first.Add(time.Duration(p.count-1) * interval))
	}
	close(jobs)
	wg.Wait()
	res.last = time.Now()
	res.sent, res.failed, res.delivered = sent.Load(), failed.Load(), delivered.Load()
	return res
}

func publishOne(ctx context.Context, c *http.Client, url, key string, body []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
	}
	var ans struct {
		Delivered int64 `json:"delivered"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return 0, fmt.Errorf("answer %.200q: %w", b, err)
	}
	return ans.Delivered, nil
}
