package redis

import (
	"context"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddyws/caddyws/broker"
)

// TestHistoryIndexFollowsTheHistory: the index holds one member per kept
// message, whether MAXLEN (size) or MINID (ttl) evicted the others.
func TestHistoryIndexFollowsTheHistory(t *testing.T) {
	ts := startServer(t)
	c := goredis.NewClient(&goredis.Options{Addr: ts.addr()})
	defer c.Close()
	ctx := context.Background()
	for _, h := range []broker.History{{Size: 5}, {Size: 50, TTL: 500 * time.Millisecond}} {
		b := startBroker(t, ts.addr(), h, func(broker.Message) {})
		s := fmt.Sprintf("user:index-%v", h.TTL)
		for i := 0; i < 20; i++ {
			if _, err := b.Publish(ctx, s, []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		if h.TTL > 0 {
			time.Sleep(h.TTL + 200*time.Millisecond)
			if _, err := b.Publish(ctx, s, []byte("fresh")); err != nil {
				t.Fatal(err)
			}
		}
		keys := b.(*Broker).keys(s)
		xlen := c.XLen(ctx, keys[0]).Val()
		zcard := c.ZCard(ctx, keys[3]).Val()
		if want := map[bool]int64{false: 5, true: 1}[h.TTL > 0]; xlen != want || zcard != xlen {
			t.Errorf("history %+v: %d kept, %d indexed, want %d of each", h, xlen, zcard, want)
		}
		_ = b.Close()
	}
}

// TestPagesOfHistoryWrittenBeforeTheIndex: a stream whose entries have no
// index members (written by a version without the index) still pages
// correctly, by reading the gap from the newest end.
func TestPagesOfHistoryWrittenBeforeTheIndex(t *testing.T) {
	ts := startServer(t)
	c := goredis.NewClient(&goredis.Options{Addr: ts.addr()})
	defer c.Close()
	ctx := context.Background()
	b := startBroker(t, ts.addr(), broker.History{Size: 10}, func(broker.Message) {})
	defer b.Close()
	s := "user:legacy"
	var ps []broker.Position
	for i := 0; i < 6; i++ {
		p, err := b.Publish(ctx, s, []byte(fmt.Sprint("m-", i)))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
		if i == 4 {
			// Entries 0..4 as an older version wrote them: no index.
			c.Del(ctx, b.(*Broker).keys(s)[3])
		}
	}
	pos := ps[0]
	var got []string
	for pos != ps[5] {
		msgs, cur, err := b.Since(ctx, s, pos, 2)
		if err != nil || len(msgs) == 0 || cur != ps[5] {
			t.Fatalf("Since(%+v, 2) = %d messages at %+v, %v", pos, len(msgs), cur, err)
		}
		for _, m := range msgs {
			got = append(got, string(m.Data))
		}
		pos = msgs[len(msgs)-1].Position
	}
	if fmt.Sprint(got) != "[m-1 m-2 m-3 m-4 m-5]" {
		t.Fatalf("paged %v, want m-1 to m-5 in order", got)
	}
}
