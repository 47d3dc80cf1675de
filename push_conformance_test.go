package caddyws

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// One conformance suite over both transports: what a subscriber gets must
// not depend on whether it came by WebSocket or by Server-Sent Events.

const conformanceSites = `http://localhost:@HTTP@ {
	websocket_push /sub {
		hub conf
		auth token_is_user
		max_events 3
		max_connections_per_user 2
		history 1000
	}
	route /caddy {
		basic_auth {
			alice %s
		}
		websocket_push {
			hub conf
			auth caddy
		}
	}
	websocket_push /anon {
		hub conf
		auth anonymous
	}
	websocket_push /push {
		hub conf
		publish_key k
	}
}`

func conformanceCaddy(t *testing.T) *testCaddy {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	tc, _ := pushCaddy(t, fmt.Sprintf(conformanceSites, hash))
	return tc
}

func expectMessage(t testing.TB, s pushSub, msg, event string) frame {
	t.Helper()
	f := expectFrame(t, s, "message")
	if string(f.Message) != msg || f.Event != event {
		t.Fatalf("got %s on %q, want %s on %q", f.Message, f.Event, msg, event)
	}
	return f
}

func TestPushConformanceAddressingAndEveryAuthMode(t *testing.T) {
	tc := conformanceCaddy(t)
	pub := func(body string) int { return mustPublish(t, tc.URL("/push"), "k", body) }
	for _, tr := range transportCases {
		for _, via := range []string{"query", "header", "cookie"} {
			t.Run(tr.name+"/"+via, func(t *testing.T) {
				user := "u-" + tr.name + "-" + via
				a, code := tr.open(t, tc, "/sub", subOpts{token: user, via: via, events: []string{"e1"}})
				if a == nil {
					t.Fatalf("refused: %d", code)
				}
				if n := pub(`{"userId":"` + user + `","message":{"k":[1,"x"]}}`); n != 1 {
					t.Fatalf("user: delivered %d", n)
				}
				expectMessage(t, a, `{"k":[1,"x"]}`, "")
				if n := pub(`{"userId":"` + user + `","event":"e2","message":"no"}`); n != 0 {
					t.Fatalf("user+other event: delivered %d", n)
				}
				pub(`{"userId":"` + user + `","event":"e1","message":"yes"}`)
				expectMessage(t, a, `"yes"`, "e1")
				pub(`{"event":"e1","message":42}`)
				expectMessage(t, a, `42`, "e1")
				pub(`{"broadcast":true,"message":[true,null]}`)
				expectMessage(t, a, `[true,null]`, "")
			})
		}
		t.Run(tr.name+"/caddy", func(t *testing.T) {
			h := http.Header{}
			h.Set("Authorization", "Basic YWxpY2U6cHc=") // alice:pw
			a, code := tr.open(t, tc, "/caddy", subOpts{header: h})
			if a == nil {
				t.Fatalf("refused: %d", code)
			}
			pub(`{"userId":"alice","message":"hi alice"}`)
			expectMessage(t, a, `"hi alice"`, "")
			h.Set("Authorization", "Basic YWxpY2U6bm8=") // alice:no
			if s, code := tr.open(t, tc, "/caddy", subOpts{header: h}); s != nil || code != http.StatusUnauthorized {
				t.Fatalf("wrong password: %v %d, want 401", s, code)
			}
		})
		t.Run(tr.name+"/anonymous", func(t *testing.T) {
			a, code := tr.open(t, tc, "/anon", subOpts{})
			if a == nil {
				t.Fatalf("refused: %d", code)
			}
			pub(`{"broadcast":true,"message":"all"}`)
			expectMessage(t, a, `"all"`, "")
		})
	}
}

func TestPushConformanceLimitsRefuseTheSameWay(t *testing.T) {
	tc := conformanceCaddy(t)
	cases := []struct {
		name        string
		o           subOpts
		wsCode, sse int
	}{
		{"too many events", subOpts{token: "lim", via: "query", events: []string{"a", "b", "c", "d"}}, 4031, http.StatusBadRequest},
	}
	for _, tr := range transportCases {
		for _, c := range cases {
			t.Run(tr.name+"/"+c.name, func(t *testing.T) {
				s, code := tr.open(t, tc, "/sub", c.o)
				want := c.wsCode
				if tr.name == "sse" {
					want = c.sse
				}
				if s != nil || code != want {
					t.Fatalf("got %v %d, want refused with %d", s, code, want)
				}
			})
		}
		t.Run(tr.name+"/per user", func(t *testing.T) {
			user := "many-" + tr.name
			for range 2 {
				if s, code := tr.open(t, tc, "/sub", subOpts{token: user, via: "query"}); s == nil {
					t.Fatalf("refused: %d", code)
				}
			}
			want := 4030
			if tr.name == "sse" {
				want = http.StatusTooManyRequests
			}
			if s, code := tr.open(t, tc, "/sub", subOpts{token: user, via: "query"}); s != nil || code != want {
				t.Fatalf("third connection: %v %d, want %d", s, code, want)
			}
		})
	}
}

// TestPushConformanceRecoveryAfterAKilledStream kills the subscriber in the
// middle of a run of publishes and reconnects it from its last position
// (the Last-Event-ID an EventSource sends, the recover map of a WebSocket
// client): every message arrives once and in order.
func TestPushConformanceRecoveryAfterAKilledStream(t *testing.T) {
	tc := conformanceCaddy(t)
	const total = 200
	for _, tr := range transportCases {
		t.Run(tr.name, func(t *testing.T) {
			user := "rec-" + tr.name
			o := subOpts{token: user, via: "query", events: []string{"feed"}}
			s, code := tr.open(t, tc, "/sub", o)
			if s == nil {
				t.Fatalf("refused: %d", code)
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 1; i <= total; i++ {
					mustPublish(t, tc.URL("/push"), "k", `{"event":"feed","message":`+strconv.Itoa(i)+`}`)
					if i%2 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
			}()
			var got []int
			var last frame
			take := func(f frame) {
				n, err := strconv.Atoi(string(f.Message))
				if err != nil {
					t.Fatalf("message %s", f.Message)
				}
				got = append(got, n)
				last = f
			}
			for len(got) < total/4 {
				take(expectFrame(t, s, "message"))
			}
			lastID := ""
			if ss, ok := s.(sseSub); ok {
				lastID = ss.s.LastID()
			}
			s.kill()
			time.Sleep(20 * time.Millisecond) // publishes go on meanwhile
			o.recover = map[string]map[string]any{last.Stream: {"offset": last.Offset, "epoch": last.Epoch}}
			o.lastID = lastID
			s, code = tr.open(t, tc, "/sub", o)
			if s == nil {
				t.Fatalf("reconnect refused: %d", code)
			}
			for len(got) < total {
				f, err := s.next(5 * time.Second)
				if err != nil {
					t.Fatalf("after %d messages: %v", len(got), err)
				}
				switch f.Type {
				case "message":
					take(f)
				case "recovered":
					if !f.Recovered {
						t.Fatalf("not recovered: %+v", f)
					}
				default:
					t.Fatalf("unexpected %+v", f)
				}
			}
			wg.Wait()
			for i, n := range got {
				if n != i+1 {
					t.Fatalf("message %d is %d: %v", i+1, n, got)
				}
			}
		})
	}
}

// TestPushConformanceSlowReaderIsClosedWith4029: a subscriber that reads
// nothing costs at most the outbound budget, then gets the 4029 close
// (a close event on an SSE stream) when it reads again.
func TestPushConformanceSlowReaderIsClosedWith4029(t *testing.T) {
	tc, _ := pushCaddy(t, `http://localhost:@HTTP@ {
	websocket_push /sub {
		hub slow
		auth token_is_user
		queue_bytes 64KiB
	}
	websocket_push /push {
		hub slow
		publish_key k
	}
}`)
	big := `"` + strings.Repeat("x", 16<<10) + `"`
	for _, tr := range transportCases {
		t.Run(tr.name, func(t *testing.T) {
			user := "slow-" + tr.name
			s, code := tr.open(t, tc, "/sub", subOpts{token: user, via: "query", paused: true})
			if s == nil {
				t.Fatalf("refused: %d", code)
			}
			delivered := 0
			for i := 0; i < 2000; i++ {
				n := mustPublish(t, tc.URL("/push"), "k", `{"userId":"`+user+`","message":`+big+`}`)
				if n == 0 {
					break
				}
				delivered++
			}
			if delivered >= 2000 {
				t.Fatalf("the budget never ran out: %d messages of 16KiB queued", delivered)
			}
			s.resume()
			for {
				f, err := s.next(10 * time.Second)
				if err != nil {
					t.Fatalf("no close frame: %v", err)
				}
				if f.Type == "close" {
					if f.Offset != 4029 {
						t.Fatalf("close %+v, want 4029", f)
					}
					return
				}
			}
		})
	}
}

func decodeJSONBody(t testing.TB, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return m
}
