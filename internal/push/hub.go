package push

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
)

// Position is a stream position (offset and epoch).
type Position = broker.Position

// Options are the hub-wide settings. Handlers that share a hub share these.
type Options struct {
	Name                  string
	QueueSize             int
	QueueBytes            int
	PingInterval          time.Duration
	PongTimeout           time.Duration
	WriteTimeout          time.Duration
	CloseGrace            time.Duration
	MaxConnections        int
	MaxConnectionsPerUser int
	History               broker.History
}

func (o *Options) defaults() {
	if o.QueueSize <= 0 {
		o.QueueSize = 256
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = 4 << 20
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.PongTimeout <= 0 {
		o.PongTimeout = 10 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.CloseGrace <= 0 {
		o.CloseGrace = time.Second
	}
}

// ErrClosed is returned by a hub that has been closed.
var ErrClosed = errors.New("hub closed")

// ErrFull is returned by Reserve when the hub holds MaxConnections.
var ErrFull = errors.New("too many connections")

// Hub indexes subscribers by user and event and delivers published
// messages to them. It outlives Caddy config reloads.
type Hub struct {
	opts    Options
	broker  broker.Broker
	log     *zap.Logger
	metrics *Metrics
	ctx     context.Context
	cancel  context.CancelFunc

	mu     sync.RWMutex
	all    map[*Conn]struct{} // registered (authenticated) connections
	users  map[string]map[*Conn]struct{}
	events map[string]map[*Conn]struct{}
	closed bool

	// live holds every served connection (authenticated or not) so Close
	// reaches all of them; wg waits for their readers.
	liveMu sync.Mutex
	live   map[*Conn]struct{}
	wg     sync.WaitGroup

	reserved atomic.Int64
	seq      atomic.Uint64
	idPrefix string
	msgSeq   atomic.Uint64
	recent   recentIDs // message ids per stream lately, against duplicates

	interestMu sync.Mutex
	interest   map[string]int

	// order keeps local delivery in the order of the offsets the broker
	// assigns, without serialising the broker calls.
	order publishOrder

	sweepDone chan struct{}
}

// New creates a hub over b (started here) and starts its keepalive sweeper.
func New(opts Options, b broker.Broker, m *Metrics, log *zap.Logger) (*Hub, error) {
	opts.defaults()
	if m == nil {
		m = NewMetrics()
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		opts: opts, broker: b, log: log, metrics: m, ctx: ctx, cancel: cancel,
		all:       make(map[*Conn]struct{}),
		users:     make(map[string]map[*Conn]struct{}),
		events:    make(map[string]map[*Conn]struct{}),
		live:      make(map[*Conn]struct{}),
		interest:  make(map[string]int),
		idPrefix:  hex.EncodeToString(rnd[:]) + "-",
		sweepDone: make(chan struct{}),
	}
	if err := b.Start(ctx, h.fromBroker); err != nil {
		cancel()
		return nil, err
	}
	go h.sweep()
	if ce := log.Check(zap.DebugLevel, "hub started"); ce != nil {
		ring, why := RingWrites()
		fields := []zap.Field{zap.Bool("io_uring_writes", ring)}
		if !ring {
			fields = append(fields, zap.NamedError("io_uring", why))
		}
		ce.Write(fields...)
	}
	return h, nil
}

// Name returns the hub's name.
func (h *Hub) Name() string { return h.opts.Name }

// Options returns the hub's settings.
func (h *Hub) Options() Options { return h.opts }

// Reserve takes a connection slot before the upgrade; it fails with ErrFull
// over MaxConnections. The slot is released when the connection served
// with Serve ends (or by Release when the upgrade fails).
func (h *Hub) Reserve(t Transport) error {
	if h.ctx.Err() != nil {
		return ErrClosed
	}
	n := h.reserved.Add(1)
	if h.opts.MaxConnections > 0 && n > int64(h.opts.MaxConnections) {
		h.reserved.Add(-1)
		h.metrics.dropped("max_connections", t)
		return ErrFull
	}
	return nil
}

// Release gives back a slot whose connection was never served.
func (h *Hub) Release() { h.reserved.Add(-1) }

func (h *Hub) track(c *Conn) {
	h.liveMu.Lock()
	h.live[c] = struct{}{}
	h.wg.Add(1)
	closed := h.ctx.Err() != nil
	h.liveMu.Unlock()
	if closed {
		c.closeWith(CloseGoingAway, "server shutting down", false)
	}
}

func (h *Hub) untrack(c *Conn) {
	h.liveMu.Lock()
	delete(h.live, c)
	h.liveMu.Unlock()
	h.reserved.Add(-1)
	h.wg.Done()
}

// register puts an authenticated connection in the index with its first
// events, enforcing the per-user limit.
// hello (the connected frame's JSON) is queued under the index lock so it
// precedes any message.
func (h *Hub) register(c *Conn, events []string, hello []byte) *errClose {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return &errClose{CloseGoingAway, "server shutting down"}
	}
	if max := h.opts.MaxConnectionsPerUser; max > 0 && c.user != "" && len(h.users[c.user]) >= max {
		h.mu.Unlock()
		return &errClose{CloseTooManyPerUser, "too many connections for this user"}
	}
	c.registered = true
	h.all[c] = struct{}{}
	if c.user != "" {
		addTo(h.users, c.user, c)
	}
	c.events = make(map[string]struct{}, len(events))
	for _, e := range events {
		c.events[e] = struct{}{}
		addTo(h.events, e, c)
	}
	c.send("connected", hello)
	h.mu.Unlock()
	h.metrics.Connections(c.tr.kind()).Inc()
	h.metrics.Subscriptions.Add(float64(len(events)))
	streams := make([]string, 0, len(events)+2)
	streams = append(streams, streamAll)
	if c.user != "" {
		streams = append(streams, userStream(c.user))
	}
	for _, e := range events {
		streams = append(streams, eventStream(e))
	}
	h.addInterest(streams)
	return nil
}

// unregister removes a connection from the index (idempotent).
func (h *Hub) unregister(c *Conn) {
	h.mu.Lock()
	if !c.registered {
		h.mu.Unlock()
		return
	}
	c.registered = false
	delete(h.all, c)
	if c.user != "" {
		removeFrom(h.users, c.user, c)
	}
	streams := []string{streamAll}
	if c.user != "" {
		streams = append(streams, userStream(c.user))
	}
	for e := range c.events {
		removeFrom(h.events, e, c)
		streams = append(streams, eventStream(e))
	}
	n := len(c.events)
	h.mu.Unlock()
	h.metrics.Connections(c.tr.kind()).Dec()
	h.metrics.Subscriptions.Sub(float64(n))
	h.dropInterest(streams)
}

// addEvents subscribes a registered connection to more events; false when
// that would exceed max (nothing is added then).
func (h *Hub) addEvents(c *Conn, events []string, max int) bool {
	var added []string
	h.mu.Lock()
	if !c.registered {
		h.mu.Unlock()
		return true
	}
	n := len(c.events)
	for _, e := range events {
		if _, ok := c.events[e]; !ok {
			n++
		}
	}
	if max > 0 && n > max {
		h.mu.Unlock()
		return false
	}
	for _, e := range events {
		if _, ok := c.events[e]; !ok {
			c.events[e] = struct{}{}
			addTo(h.events, e, c)
			added = append(added, eventStream(e))
		}
	}
	h.mu.Unlock()
	h.metrics.Subscriptions.Add(float64(len(added)))
	h.addInterest(added)
	return true
}

func (h *Hub) unsubscribe(c *Conn, events []string) {
	var removed []string
	h.mu.Lock()
	if c.registered {
		for _, e := range events {
			if _, ok := c.events[e]; ok {
				delete(c.events, e)
				removeFrom(h.events, e, c)
				removed = append(removed, eventStream(e))
			}
		}
	}
	h.mu.Unlock()
	h.metrics.Subscriptions.Sub(float64(len(removed)))
	h.dropInterest(removed)
}

func addTo(m map[string]map[*Conn]struct{}, k string, c *Conn) {
	s := m[k]
	if s == nil {
		s = make(map[*Conn]struct{})
		m[k] = s
	}
	s[c] = struct{}{}
}

func removeFrom(m map[string]map[*Conn]struct{}, k string, c *Conn) {
	if s := m[k]; s != nil {
		delete(s, c)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

// addInterest and dropInterest count references per stream and tell the
// broker about each 0<->1 transition, so a node receives only what its own
// connections can match.
func (h *Hub) addInterest(streams []string) {
	h.interestMu.Lock()
	defer h.interestMu.Unlock()
	for _, s := range streams {
		h.interest[s]++
		if h.interest[s] == 1 {
			if err := h.broker.Subscribe(s); err != nil {
				h.log.Warn("subscribing broker stream", zap.String("stream", s), zap.Error(err))
			}
		}
	}
}

func (h *Hub) dropInterest(streams []string) {
	h.interestMu.Lock()
	defer h.interestMu.Unlock()
	for _, s := range streams {
		h.interest[s]--
		if h.interest[s] <= 0 {
			delete(h.interest, s)
			if err := h.broker.Unsubscribe(s); err != nil {
				h.log.Warn("unsubscribing broker stream", zap.String("stream", s), zap.Error(err))
			}
		}
	}
}

// Close closes every connection with 1001, waits (bounded) for them to end,
// and closes the broker.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	h.liveMu.Lock()
	h.cancel()
	conns := make([]*Conn, 0, len(h.live))
	for c := range h.live {
		conns = append(conns, c)
	}
	h.liveMu.Unlock()
	for _, c := range conns {
		c.closeWith(CloseGoingAway, "server shutting down", false)
	}
	<-h.sweepDone
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(h.opts.CloseGrace + 2*time.Second):
		// Peers that neither answer nor drain: cut them.
		for _, c := range conns {
			c.tr.abort()
		}
		<-done
	}
	return h.broker.Close()
}
