package caddyws

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/internal/push"
)

// Hubs outlive config reloads: they sit in a caddy.UsagePool keyed by name
// (a handler's hub, or its site's unnamed hub) and hub settings, so a reload whose hub settings are unchanged gets the
// very same hub and drops no subscriber, while a changed broker or limit
// gets a new hub (the old one closes its connections with 1001 once the old
// config lets go of it).
var hubs = caddy.NewUsagePool()

type hubEntry struct{ hub *push.Hub }

func (e hubEntry) Destruct() error { return e.hub.Close() }

// hubRef is shared by the handlers of one config load that name the same
// hub. Hub settings may be written on any one of those handlers, so the
// settings are merged as handlers provision, and the hub is re-acquired
// whenever the merge changes them; by the time the config serves, every
// handler points at the hub of the complete settings. The ref holds one
// UsagePool reference for the whole load.
type hubRef struct {
	mu      sync.Mutex
	name    string
	merged  Push // hub-wide settings only
	key     string
	cur     atomic.Pointer[push.Hub]
	holders int
	load    any
}

var (
	hubRefsMu sync.Mutex
	hubRefs   = map[hubRefKey]*hubRef{}
)

// hubRefKey identifies a hub name within one config load. The load is told
// by its metrics registry, which Caddy makes once per load and shares with
// every module of it (ctx.Context is not enough: the http app gives each
// server its own).
type hubRefKey struct {
	load any
	name string
}

func loadID(ctx caddy.Context) any {
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		return reg
	}
	return ctx.Context
}

func (r *hubRef) hub() *push.Hub { return r.cur.Load() }

// acquireHub merges p's hub settings into its load's ref for the hub name
// and (re)acquires the hub they describe. The ref is returned even with an
// error: the handler's Cleanup releases it.
func acquireHub(ctx caddy.Context, p *Push) (*hubRef, error) {
	k := hubRefKey{loadID(ctx), p.hubName}
	hubRefsMu.Lock()
	r := hubRefs[k]
	if r == nil {
		r = &hubRef{name: p.hubName, load: k.load}
		hubRefs[k] = r
	}
	r.holders++
	hubRefsMu.Unlock()

	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.merge(p); err != nil {
		return r, err
	}
	opts := r.merged.hubOptions()
	fp, _ := json.Marshal(struct {
		O push.Options
		B json.RawMessage
	}{opts, r.merged.BrokerRaw})
	key := string(fp)
	if key == r.key {
		return r, nil
	}
	var factory BrokerFactory
	if r.merged.BrokerRaw != nil {
		// LoadModule clears the raw field it loads: load from a copy so
		// the merged settings keep the broker config.
		tmp := Push{BrokerRaw: r.merged.BrokerRaw}
		mod, err := ctx.LoadModule(&tmp, "BrokerRaw")
		if err != nil {
			return r, fmt.Errorf("websocket_push: loading broker: %w", err)
		}
		var ok bool
		if factory, ok = mod.(BrokerFactory); !ok {
			return r, fmt.Errorf("websocket_push: module %T is not a broker", mod)
		}
		r.merged.multiNode = mod.(caddy.Module).CaddyModule().ID != "websocket_push.brokers.memory"
	}
	hubLog := p.logger.Named("hub").With(zap.String("hub", p.hubName))
	val, _, err := hubs.LoadOrNew(key, func() (caddy.Destructor, error) {
		b, err := newBroker(factory, opts.History, hubLog)
		if err != nil {
			return nil, err
		}
		if r.merged.multiNode {
			// One broker server may carry many hubs (sites, named hubs):
			// each sees only its own streams and history.
			b = broker.Scope(b, p.hubName)
		}
		h, err := push.New(opts, b, hubMetrics(p.hubName), hubLog)
		if err != nil {
			_ = b.Close()
			return nil, fmt.Errorf("starting broker: %w", err)
		}
		return hubEntry{h}, nil
	})
	if err != nil {
		return r, fmt.Errorf("websocket_push: hub %q: %w", p.hubName, err)
	}
	if r.key != "" {
		_, _ = hubs.Delete(r.key)
	}
	r.key = key
	r.cur.Store(val.(hubEntry).hub)
	return r, nil
}

// merge adds p's explicit hub settings; a setting two handlers give
// different values is an error.
func (r *hubRef) merge(p *Push) error {
	m := &r.merged
	conflict := func(name string) error {
		return fmt.Errorf("websocket_push: hub %q: %s is set differently on two handlers; set hub settings once", r.name, name)
	}
	ints := []struct {
		name     string
		dst, src *int
	}{
		{"queue_size", &m.QueueSize, &p.QueueSize},
		{"queue_bytes", &m.QueueBytes, &p.QueueBytes},
		{"max_connections", &m.MaxConnections, &p.MaxConnections},
		{"max_connections_per_user", &m.MaxConnectionsPerUser, &p.MaxConnectionsPerUser},
	}
	for _, f := range ints {
		if *f.src != 0 {
			if *f.dst != 0 && *f.dst != *f.src {
				return conflict(f.name)
			}
			*f.dst = *f.src
		}
	}
	durs := []struct {
		name     string
		dst, src *caddy.Duration
	}{
		{"ping_interval", &m.PingInterval, &p.PingInterval},
		{"pong_timeout", &m.PongTimeout, &p.PongTimeout},
		{"write_timeout", &m.WriteTimeout, &p.WriteTimeout},
	}
	for _, f := range durs {
		if *f.src != 0 {
			if *f.dst != 0 && *f.dst != *f.src {
				return conflict(f.name)
			}
			*f.dst = *f.src
		}
	}
	if p.History != nil {
		if m.History != nil && *m.History != *p.History {
			return conflict("history")
		}
		h := *p.History
		m.History = &h
	}
	if p.BrokerRaw != nil {
		if m.BrokerRaw != nil && !bytes.Equal(m.BrokerRaw, p.BrokerRaw) {
			return conflict("broker")
		}
		m.BrokerRaw = p.BrokerRaw
	}
	m.Hub = r.name
	return nil
}

// release gives back the load's reference when its last handler cleans up.
func (r *hubRef) release() error {
	hubRefsMu.Lock()
	r.holders--
	last := r.holders == 0
	if last {
		delete(hubRefs, hubRefKey{r.load, r.name})
	}
	hubRefsMu.Unlock()
	if !last {
		return nil
	}
	r.mu.Lock()
	key := r.key
	r.key = ""
	r.mu.Unlock()
	if key == "" {
		return nil
	}
	_, err := hubs.Delete(key)
	return err
}

// multiNode reports whether the hub's broker reaches other nodes.
func (r *hubRef) multiNode() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.merged.multiNode
}

// siteHubPrefix starts the names of unnamed hubs; user hub names may not.
const siteHubPrefix = "site:"

// siteHubName names the hub the unnamed handlers of one site share:
// site:<hosts>@<listen addresses>. A site is what a Caddyfile site block
// becomes: a top-level route of an HTTP server, told apart from the
// server's other sites by its host matcher. The name is built from config
// values only (not from a server's generated name such as srv0, which a
// new site can shift), so a reload that keeps the site keeps the name and
// so the hub.
func siteHubName(ctx caddy.Context) string {
	srv, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil {
		return siteHubPrefix + "*@*"
	}
	listen := slices.Sorted(slices.Values(srv.Listen))
	hosts := provisioningRouteHosts(srv)
	if len(hosts) == 0 {
		hosts = []string{"*"}
	}
	return siteHubPrefix + strings.Join(hosts, ",") + "@" + strings.Join(listen, ",")
}

// provisioningRouteHosts returns the host names matched by the server's
// top-level route being provisioned, the one this handler sits in. Caddy
// provisions routes in order and drops each route's raw handler config once
// its handlers are loaded, so that route is the first whose raw handlers are
// still there. A handler outside the server's routes and error routes (a
// named route) gets none: it shares the server-wide hub of the routes
// without host names.
func provisioningRouteHosts(srv *caddyhttp.Server) []string {
	lists := []caddyhttp.RouteList{srv.Routes}
	if srv.Errors != nil {
		lists = append(lists, srv.Errors.Routes)
	}
	for _, routes := range lists {
		for i := range routes {
			if routes[i].HandlersRaw == nil {
				continue
			}
			var hosts []string
			for _, set := range routes[i].MatcherSets {
				for _, m := range set {
					if hm, ok := m.(*caddyhttp.MatchHost); ok {
						hosts = append(hosts, *hm...)
					}
				}
			}
			slices.Sort(hosts)
			return slices.Compact(hosts)
		}
	}
	return nil
}
