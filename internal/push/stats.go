package push

import "sort"

// Stats is a snapshot of a hub for the admin API.
type Stats struct {
	Hub         string `json:"hub"`
	Connections int    `json:"connections"`
	Pending     int    `json:"pending_auth"`
	// Transports counts the connections by transport (websocket, sse).
	Transports map[Transport]int `json:"transports"`
	Users      map[string]int    `json:"users"`
	Events     map[string]int    `json:"events"`
}

// Stats counts connections per user and per event.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	s := Stats{
		Hub:         h.opts.Name,
		Connections: len(h.all),
		Users:       make(map[string]int, len(h.users)),
		Events:      make(map[string]int, len(h.events)),
		Transports:  make(map[Transport]int, len(Transports)),
	}
	for _, t := range Transports {
		s.Transports[t] = 0
	}
	for c := range h.all {
		s.Transports[c.tr.kind()]++
	}
	for u, cs := range h.users {
		s.Users[u] = len(cs)
	}
	for e, cs := range h.events {
		s.Events[e] = len(cs)
	}
	h.mu.RUnlock()
	h.liveMu.Lock()
	s.Pending = len(h.live) - s.Connections
	h.liveMu.Unlock()
	if s.Pending < 0 {
		s.Pending = 0
	}
	return s
}

// Presence tells whether a user is online on this node.
type Presence struct {
	User        string   `json:"user"`
	Online      bool     `json:"online"`
	Connections int      `json:"connections"`
	Events      []string `json:"events"`
	// Transports counts the user's connections by transport.
	Transports map[Transport]int `json:"transports"`
}

// Presence reports user's connections and the events they subscribed to.
func (h *Hub) Presence(user string) Presence {
	p := Presence{User: user, Events: []string{}, Transports: map[Transport]int{}}
	h.mu.RLock()
	seen := map[string]struct{}{}
	for c := range h.users[user] {
		p.Connections++
		p.Transports[c.tr.kind()]++
		for e := range c.events {
			if _, ok := seen[e]; !ok {
				seen[e] = struct{}{}
				p.Events = append(p.Events, e)
			}
		}
	}
	h.mu.RUnlock()
	p.Online = p.Connections > 0
	sort.Strings(p.Events)
	return p
}

// Drop closes user's connections (only those subscribed to event, when
// event is not empty) with 4004 and returns how many.
func (h *Hub) Drop(user, event string) int {
	var victims []*Conn
	h.mu.RLock()
	for c := range h.users[user] {
		if event == "" || c.hasEventLocked(event) {
			victims = append(victims, c)
		}
	}
	h.mu.RUnlock()
	for _, c := range victims {
		h.unregister(c)
		c.closeWith(CloseDropped, "dropped by operator", false)
		h.metrics.dropped("admin", c.tr.kind())
	}
	return len(victims)
}
