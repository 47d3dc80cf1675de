package caddyws

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyws/caddyws/internal/push"
)

func init() {
	caddy.RegisterModule(PushAdmin{})
}

// PushAdmin serves websocket_push operations on Caddy's admin API:
//
//	GET  /websocket_push/stats[?hub=<name>]             connections per user and per event
//	GET  /websocket_push/presence?user=<id>[&hub=<name>] is the user online, on which events
//	POST /websocket_push/drop  {"user":"<id>","event":"<e>","hub":"<name>"}
//	                                                     close the user's connections (those on
//	                                                     event only, when given) with 4004
//
// Without hub, every hub of this Caddy is included. Counts are this node's.
type PushAdmin struct{}

// CaddyModule returns the Caddy module information.
func (PushAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.websocket_push",
		New: func() caddy.Module { return new(PushAdmin) },
	}
}

// Routes returns the admin routes.
func (PushAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/websocket_push/stats", Handler: caddy.AdminHandlerFunc(adminStats)},
		{Pattern: "/websocket_push/presence", Handler: caddy.AdminHandlerFunc(adminPresence)},
		{Pattern: "/websocket_push/drop", Handler: caddy.AdminHandlerFunc(adminDrop)},
	}
}

// liveHubs returns the hubs of the running config named name (all when
// name is "").
func liveHubs(name string) []*push.Hub {
	var out []*push.Hub
	hubs.Range(func(_, v any) bool {
		if e, ok := v.(hubEntry); ok && (name == "" || e.hub.Name() == name) {
			out = append(out, e.hub)
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

func adminMethod(r *http.Request, m string) error {
	if r.Method != m {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed: use %s", m)}
	}
	return nil
}

func selectHubs(name string) ([]*push.Hub, error) {
	hs := liveHubs(name)
	if name != "" && len(hs) == 0 {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no websocket_push hub named %q", name)}
	}
	return hs, nil
}

func writeAdminJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

func adminStats(w http.ResponseWriter, r *http.Request) error {
	if err := adminMethod(r, http.MethodGet); err != nil {
		return err
	}
	hs, err := selectHubs(r.URL.Query().Get("hub"))
	if err != nil {
		return err
	}
	out := make([]push.Stats, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.Stats())
	}
	return writeAdminJSON(w, out)
}

func adminPresence(w http.ResponseWriter, r *http.Request) error {
	if err := adminMethod(r, http.MethodGet); err != nil {
		return err
	}
	user := r.URL.Query().Get("user")
	if user == "" {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("user is required")}
	}
	hs, err := selectHubs(r.URL.Query().Get("hub"))
	if err != nil {
		return err
	}
	total := push.Presence{User: user, Events: []string{}, Transports: map[push.Transport]int{}}
	seen := map[string]bool{}
	for _, h := range hs {
		p := h.Presence(user)
		total.Connections += p.Connections
		for t, n := range p.Transports {
			total.Transports[t] += n
		}
		for _, e := range p.Events {
			if !seen[e] {
				seen[e] = true
				total.Events = append(total.Events, e)
			}
		}
	}
	total.Online = total.Connections > 0
	sort.Strings(total.Events)
	return writeAdminJSON(w, total)
}

func adminDrop(w http.ResponseWriter, r *http.Request) error {
	if err := adminMethod(r, http.MethodPost); err != nil {
		return err
	}
	var req struct {
		User  string `json:"user"`
		Event string `json:"event"`
		Hub   string `json:"hub"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil || req.User == "" {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`want a JSON body {"user":"<id>"} (optional "event", "hub")`)}
	}
	hs, err := selectHubs(req.Hub)
	if err != nil {
		return err
	}
	n := 0
	for _, h := range hs {
		n += h.Drop(req.User, req.Event)
	}
	return writeAdminJSON(w, map[string]int{"dropped": n})
}

// Interface guards
var (
	_ caddy.Module      = PushAdmin{}
	_ caddy.AdminRouter = PushAdmin{}
)
