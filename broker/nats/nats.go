package nats

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
)

// Header names on the wire.
const (
	hdrNode    = "Caddyws-Node"       // the publishing node, to skip our own republished messages
	hdrSeq     = "Nats-Sequence"      // set by JetStream republish
	hdrLastSeq = "Nats-Last-Sequence" // previous sequence of the same subject, set by republish
)

// Broker is the NATS broker. Create it with New.
type Broker struct {
	cfg   Config
	hist  broker.History
	log   *zap.Logger
	node  string
	stats broker.Counters

	nc *gonats.Conn
	js jetstream.JetStream

	epoch   atomic.Pointer[string]
	lastAck atomic.Uint64

	mu      sync.Mutex
	want    map[string]*gonats.Subscription // streams of interest; nil sub until subscribed
	started bool
	closed  bool

	msgs    chan *gonats.Msg
	handler broker.Handler
	gaps    gapTracker
	echoes  broker.Echoes
	ctx     context.Context // canceled by Close
	cancel  context.CancelFunc
	done    chan struct{}
}

// New checks cfg and returns an unstarted broker keeping history as h
// bounds it (in JetStream; h.Size == 0 turns JetStream off entirely).
func New(cfg Config, h broker.History, logger *zap.Logger) (*Broker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	var id [9]byte
	_, _ = rand.Read(id[:])
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg:    cfg,
		hist:   h,
		log:    logger,
		node:   base64.RawURLEncoding.EncodeToString(id[:]),
		want:   make(map[string]*gonats.Subscription),
		msgs:   make(chan *gonats.Msg, 65536),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	empty := ""
	b.epoch.Store(&empty)
	b.gaps.last = make(map[string]uint64)
	return b, nil
}

func (b *Broker) pubSubject(stream string) string {
	if b.hist.Size > 0 {
		return b.cfg.Prefix + ".s." + broker.EncodeName(stream)
	}
	return b.liveSubject(stream)
}

func (b *Broker) liveSubject(stream string) string {
	return b.cfg.Prefix + ".r." + broker.EncodeName(stream)
}

// Start connects (or keeps trying in the background: a node must start
// while NATS is down and serve once it is back), creates or updates the
// JetStream stream, and starts delivering to h.
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	b.mu.Lock()
	if b.closed || b.started {
		b.mu.Unlock()
		if b.closed {
			return fmt.Errorf("starting nats broker: %w", broker.ErrUnavailable)
		}
		return nil
	}
	fail := func(err error) error {
		b.mu.Unlock()
		return err
	}
	opts, err := b.cfg.natsOptions(b)
	if err != nil {
		return fail(err)
	}
	nc, err := gonats.Connect(b.cfg.URL, opts...)
	if err != nil {
		return fail(fmt.Errorf("connecting to nats %s: %w", broker.RedactURL(b.cfg.URL), broker.RedactError(err, b.cfg.URL)))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fail(fmt.Errorf("nats jetstream: %w", err))
	}
	b.nc, b.js, b.handler, b.started = nc, js, h, true
	for s := range b.want {
		if err := b.subscribeLocked(s); err != nil {
			b.started = false
			nc.Close()
			return fail(err)
		}
	}
	go b.dispatch()
	b.mu.Unlock()
	if nc.IsConnected() {
		b.stats.Connected.Store(1)
		b.log.Info("connected to nats", zap.String("url", broker.RedactURL(nc.ConnectedUrl())))
		if err := b.ensureStreamBounded(ctx); errors.Is(err, errTooFewReplicas) {
			_ = b.Close()
			return err
		}
	} else {
		b.stats.Errors.Add(1)
		b.log.Warn("nats unreachable: publishes fail until it is back; reconnecting in the background", zap.String("url", broker.RedactURL(b.cfg.URL)))
	}
	return nil
}

// Publish stores (history on) and sends data to every node subscribed to
// the stream. It fails with ErrUnavailable within the configured timeout.
func (b *Broker) Publish(ctx context.Context, stream string, data []byte) (broker.Position, error) {
	b.mu.Lock()
	nc, closed := b.nc, b.closed
	b.mu.Unlock()
	if closed || nc == nil {
		return broker.Position{}, fmt.Errorf("publishing to %q: nats broker not running: %w", stream, broker.ErrUnavailable)
	}
	if !nc.IsConnected() {
		b.stats.Errors.Add(1)
		return broker.Position{}, fmt.Errorf("publishing to %q: not connected to nats (%s): %w", stream, nc.Status(), broker.ErrUnavailable)
	}
	msg := &gonats.Msg{Subject: b.pubSubject(stream), Header: gonats.Header{hdrNode: []string{b.node}}, Data: data}
	if b.hist.Size <= 0 {
		if err := nc.PublishMsg(msg); err != nil {
			b.stats.Errors.Add(1)
			return broker.Position{}, fmt.Errorf("publishing to %q: %w: %w", stream, broker.ErrUnavailable, err)
		}
		return broker.Position{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	b.mu.Lock()
	js := b.js
	b.mu.Unlock()
	echo := b.echoes.Begin(stream, data)
	ack, err := js.PublishMsg(ctx, msg)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, gonats.ErrNoResponders) {
		// The JetStream stream is gone (deleted, or a server without
		// persistence restarted): recreate it, which starts a new epoch.
		if serr := b.ensureStream(ctx); serr == nil {
			ack, err = js.PublishMsg(ctx, msg)
		}
	}
	// No acknowledgement in time: JetStream may have stored the message
	// (and republished it to the other nodes) all the same.
	unknown := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, gonats.ErrTimeout)
	if held := echo.End(unknown); held != nil {
		b.handler(*held)
	}
	if unknown {
		b.stats.Errors.Add(1)
		return broker.Position{}, fmt.Errorf("publishing to %q: %w: %w", stream, broker.ErrMaybeStored, err)
	}
	if err != nil {
		b.stats.Errors.Add(1)
		return broker.Position{}, fmt.Errorf("publishing to %q: %w: %w", stream, broker.ErrUnavailable, err)
	}
	if prev := b.lastAck.Swap(ack.Sequence); ack.Sequence < prev {
		// Sequences went back: the JetStream stream was recreated.
		_ = b.refreshEpoch(ctx)
	}
	return broker.Position{Offset: ack.Sequence, Epoch: b.currentEpoch()}, nil
}

// Subscribe starts receiving the stream's messages from other nodes. While
// disconnected the interest is kept by the client and sent on reconnect.
func (b *Broker) Subscribe(stream string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("subscribing %q: %w", stream, broker.ErrUnavailable)
	}
	if _, ok := b.want[stream]; ok {
		return nil
	}
	b.want[stream] = nil
	if !b.started {
		return nil
	}
	return b.subscribeLocked(stream)
}

func (b *Broker) subscribeLocked(stream string) error {
	sub, err := b.nc.ChanSubscribe(b.liveSubject(stream), b.msgs)
	if err != nil {
		b.stats.Errors.Add(1)
		delete(b.want, stream)
		return fmt.Errorf("subscribing %q: %w", stream, err)
	}
	b.want[stream] = sub
	return nil
}

// Unsubscribe stops receiving the stream.
func (b *Broker) Unsubscribe(stream string) error {
	b.mu.Lock()
	sub, ok := b.want[stream]
	delete(b.want, stream)
	b.mu.Unlock()
	b.gaps.forget(stream)
	if !ok || sub == nil {
		return nil
	}
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, gonats.ErrConnectionClosed) {
		b.stats.Errors.Add(1)
		return fmt.Errorf("unsubscribing %q: %w", stream, err)
	}
	return nil
}

// Close stops delivery and closes the connection.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	started, nc := b.started, b.nc
	b.mu.Unlock()
	b.cancel()
	if nc != nil {
		nc.Close()
	}
	if started {
		<-b.done
	}
	b.stats.Connected.Store(0)
	return nil
}

// Stats returns the error, reconnect and gap counters.
func (b *Broker) Stats() broker.Stats { return b.stats.Snapshot() }

func (b *Broker) currentEpoch() string { return *b.epoch.Load() }

func (b *Broker) onConnect(nc *gonats.Conn) {
	// Only after a failed first attempt (RetryOnFailedConnect).
	b.stats.Connected.Store(1)
	b.log.Info("connected to nats", zap.String("url", broker.RedactURL(nc.ConnectedUrl())))
	go func() { _ = b.ensureStreamBounded(b.ctx) }()
}

func (b *Broker) onDisconnect(nc *gonats.Conn, err error) {
	if b.ctx.Err() != nil {
		return // our own Close
	}
	b.stats.Connected.Store(0)
	b.stats.Disconnects.Add(1)
	b.stats.Errors.Add(1)
	b.log.Error("lost connection to nats: publishes fail with 503 until it is back; reconnecting", zap.Error(err))
}

func (b *Broker) onReconnect(nc *gonats.Conn) {
	b.stats.Connected.Store(1)
	b.stats.Reconnects.Add(1)
	b.log.Info("reconnected to nats; subscriptions restored", zap.String("url", broker.RedactURL(nc.ConnectedUrl())))
	go func() { _ = b.ensureStreamBounded(b.ctx) }()
}

func (b *Broker) onAsyncError(nc *gonats.Conn, sub *gonats.Subscription, err error) {
	b.stats.Errors.Add(1)
	subj := ""
	if sub != nil {
		subj = sub.Subject
	}
	b.log.Warn("nats error (messages may have been dropped; gaps are filled from history)", zap.String("subject", subj), zap.Error(err))
}

// ensureStreamBounded runs ensureStream with the configured timeout and
// logs a failure; the next publish or reconnect tries again.
func (b *Broker) ensureStreamBounded(ctx context.Context) error {
	if b.hist.Size <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*b.cfg.Timeout)
	defer cancel()
	err := b.ensureStream(ctx)
	if err != nil && b.ctx.Err() == nil {
		b.stats.Errors.Add(1)
		b.log.Error("setting up the jetstream history stream (is JetStream enabled on the server, e.g. nats-server -js, and may this user use it?)", zap.String("stream", b.cfg.Stream), zap.Error(err))
	}
	return err
}

// isConnErr reports errors that mean "cannot reach NATS" rather than a
// refusal.
func isConnErr(err error) bool {
	return errors.Is(err, gonats.ErrConnectionClosed) || errors.Is(err, gonats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, gonats.ErrNoResponders) ||
		errors.Is(err, gonats.ErrReconnectBufExceeded) || strings.Contains(err.Error(), "connection")
}
