package brokertest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/caddyws/caddyws/broker"
)

// testPaging: reading history limit messages at a time, each page going on
// from the last message of the one before, yields exactly what one read
// does: every message once, in order, with the positions Publish returned.
// A page boundary exactly at the end leaves a last page with nothing.
func testPaging(t *testing.T, b Backend) {
	a := b.NewNode(t, broker.History{Size: 100})
	s := uniq(t, "s")
	ps := publishN(t, a, s, "m", 7) // 6 messages after ps[0]
	var want []string
	for i := 1; i < len(ps); i++ {
		want = append(want, fmt.Sprintf("m-%d", i))
	}
	for _, limit := range []int{1, 2, 3, 4, 6, 7} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			got, pages := pageAll(t, a, s, ps[0], limit, ps[len(ps)-1])
			if len(got) != len(want) {
				t.Fatalf("pages of %d returned %d messages, want %d: %s", limit, len(got), len(want), dump(got))
			}
			for i, m := range got {
				if string(m.Data) != want[i] || m.Position != ps[i+1] || m.Stream != s {
					t.Fatalf("paged message %d = %q at %+v on %q, want %q at %+v", i, m.Data, m.Position, m.Stream, want[i], ps[i+1])
				}
			}
			if wantPages := (len(want) + limit - 1) / limit; pages != wantPages {
				t.Fatalf("pages of %d: %d pages, want %d", limit, pages, wantPages)
			}
		})
	}
	// The boundary exactly at the end: the page after a full last page is
	// empty, not an error.
	msgs, cur, err := a.Since(ctxT(t, 10*time.Second), s, ps[3], 3)
	if err != nil || len(msgs) != 3 || cur != ps[6] {
		t.Fatalf("Since(ps[3], 3) = %s at %+v, %v: want the last three", dump(msgs), cur, err)
	}
	msgs, cur, err = a.Since(ctxT(t, 10*time.Second), s, msgs[2].Position, 3)
	if err != nil || len(msgs) != 0 || cur != ps[6] {
		t.Fatalf("Since(last, 3) = %s at %+v, %v: want nothing after the last message", dump(msgs), cur, err)
	}
}

// pageAll reads the stream from pos in pages of limit until it reaches end,
// checking that every page but the last is full.
func pageAll(t *testing.T, n broker.Broker, s string, pos broker.Position, limit int, end broker.Position) ([]broker.Message, int) {
	t.Helper()
	var got []broker.Message
	pages := 0
	for pos.Offset < end.Offset {
		msgs, cur, err := n.Since(ctxT(t, 10*time.Second), s, pos, limit)
		if err != nil {
			t.Fatalf("Since(%+v, %d) after %d pages: %v", pos, limit, pages, err)
		}
		if cur != end {
			t.Fatalf("Since(%+v, %d) current position %+v, want %+v", pos, limit, cur, end)
		}
		if len(msgs) == 0 || len(msgs) > limit {
			t.Fatalf("Since(%+v, %d) returned %d messages before the end: %s", pos, limit, len(msgs), dump(msgs))
		}
		last := msgs[len(msgs)-1].Position
		if len(msgs) < limit && last != end {
			t.Fatalf("Since(%+v, %d) returned a short page (%d) ending at %+v before the end %+v", pos, limit, len(msgs), last, end)
		}
		got = append(got, msgs...)
		pages++
		pos = last
	}
	return got, pages
}

// testEvictedBetweenPages: history evicted past a reader's continuation
// between two pages makes the next page fail with ErrNotRecovered, never a
// page with a silent gap; a continuation whose successor is still kept
// goes on correctly.
func testEvictedBetweenPages(t *testing.T, b Backend) {
	a := b.NewNode(t, broker.History{Size: 5})
	s := uniq(t, "s")
	ps := publishN(t, a, s, "m", 5)
	msgs, _, err := a.Since(ctxT(t, 10*time.Second), s, ps[0], 2)
	if err != nil || len(msgs) != 2 || msgs[1].Position != ps[2] {
		t.Fatalf("first page = %s, %v: want m-1, m-2", dump(msgs), err)
	}
	ps = append(ps, publishN(t, a, s, "n", 5)...) // evicts m-0 to m-3 (or m-4)
	msgs, _, err = a.Since(ctxT(t, 10*time.Second), s, ps[2], 2)
	if !errors.Is(err, broker.ErrNotRecovered) {
		t.Fatalf("page after eviction past the continuation = %s, %v: want ErrNotRecovered", dump(msgs), err)
	}
	// ps[4] is the last message before the oldest kept one: nothing after
	// it was evicted.
	msgs, cur, err := a.Since(ctxT(t, 10*time.Second), s, ps[4], 2)
	if err != nil || len(msgs) != 2 || msgs[0].Position != ps[5] || msgs[1].Position != ps[6] ||
		string(msgs[0].Data) != "n-0" || string(msgs[1].Data) != "n-1" || cur != ps[9] {
		t.Fatalf("page from the newest evicted position = %s at %+v, %v: want n-0, n-1 at %+v", dump(msgs), cur, err, ps[9])
	}
}
