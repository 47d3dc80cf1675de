//go:build linux

package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// The reference server is a straightforward gorilla/websocket push server,
// built into the tool so websocket_push can be
// measured side by side with it on the same machine at the same moment:
// one reader and one writer goroutine per connection, a buffered channel
// as the queue, one WriteMessage (one syscall) per frame, the frame
// encoded once per publish. It speaks only the classic shapes the load
// uses: first frame {"token","event"} with the token as user id, and
// POST {"userId"|"userIds"|"event"|"broadcast","message"}.
type refServer struct {
	mu     sync.RWMutex
	byUser map[string]map[*refConn]struct{}
	all    map[*refConn]struct{}
	seq    atomic.Int64
}

type refConn struct {
	ws    *websocket.Conn
	user  string
	event string
	out   chan []byte
}

func serveReference(ctx context.Context, addr string) error {
	s := &refServer{byUser: map[string]map[*refConn]struct{}{}, all: map[*refConn]struct{}{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", s.subscribe)
	mux.HandleFunc("/push", s.publish)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	logf("reference server on %s", ln.Addr())
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

var refUpgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (s *refServer) subscribe(w http.ResponseWriter, r *http.Request) {
	ws, err := refUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var first struct{ Token, Event string }
	if err := ws.ReadJSON(&first); err != nil || first.Token == "" {
		ws.Close()
		return
	}
	_ = ws.SetReadDeadline(time.Time{})
	c := &refConn{ws: ws, user: first.Token, event: first.Event, out: make(chan []byte, 256)}
	s.mu.Lock()
	if s.byUser[c.user] == nil {
		s.byUser[c.user] = map[*refConn]struct{}{}
	}
	s.byUser[c.user][c] = struct{}{}
	s.all[c] = struct{}{}
	s.mu.Unlock()
	ack, _ := json.Marshal(map[string]any{"type": "connected", "user": c.user, "events": []string{c.event}})
	c.out <- ack
	go c.writer()
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			break
		}
	}
	s.mu.Lock()
	delete(s.byUser[c.user], c)
	delete(s.all, c)
	s.mu.Unlock()
	close(c.out)
}

func (c *refConn) writer() {
	for b := range c.out {
		_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
			c.ws.Close()
			for range c.out {
			}
			return
		}
	}
	c.ws.Close()
}

func (s *refServer) publish(w http.ResponseWriter, r *http.Request) {
	var p struct {
		UserID    string          `json:"userId"`
		UserIDs   []string        `json:"userIds"`
		Event     string          `json:"event"`
		Broadcast bool            `json:"broadcast"`
		Message   json.RawMessage `json:"message"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || json.Unmarshal(body, &p) != nil || len(p.Message) == 0 {
		http.Error(w, `{"error":"bad body"}`, http.StatusBadRequest)
		return
	}
	id := strconv.FormatInt(s.seq.Add(1), 10)
	frame, _ := json.Marshal(map[string]any{"type": "message", "id": id, "event": p.Event, "message": p.Message})
	match := func(c *refConn) bool { return p.Event == "" || c.event == p.Event }
	delivered := 0
	send := func(c *refConn) {
		if !match(c) {
			return
		}
		select {
		case c.out <- frame:
			delivered++
		default: // queue full: a slow consumer; the load counts it as lost
		}
	}
	s.mu.RLock()
	switch {
	case p.Broadcast || (p.UserID == "" && len(p.UserIDs) == 0):
		for c := range s.all {
			send(c)
		}
	default:
		users := p.UserIDs
		if p.UserID != "" {
			users = append(users, p.UserID)
		}
		for _, u := range users {
			for c := range s.byUser[u] {
				send(c)
			}
		}
	}
	s.mu.RUnlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"id":"` + id + `","delivered":` + strconv.Itoa(delivered) + `}`))
}
