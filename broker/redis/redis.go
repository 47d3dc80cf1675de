package redis

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
)

// Broker is the Redis broker. Create it with New.
type Broker struct {
	cfg   Config
	hist  broker.History
	log   *zap.Logger
	node  string
	stats broker.Counters

	// Set once a server has answered (see useClient).
	client  goredis.UniversalClient
	ps      *goredis.PubSub
	mode    mode
	slots   *slotWatcher // Redis Cluster only
	modeErr error        // a wrong cluster setting found after start

	mu      sync.Mutex
	want    map[string]bool // streams of interest
	ops     []subOp         // queued for the subscriber connection, in order
	opReady chan struct{}
	started bool
	closed  bool

	handler broker.Handler
	gaps    gapTracker
	echoes  broker.Echoes
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type subOp struct {
	subscribe bool
	channel   string
}

// New checks cfg and returns an unstarted broker keeping history as h
// bounds it (h.Size == 0: Pub/Sub only, no keys are written).
func New(cfg Config, h broker.History, logger *zap.Logger) (*Broker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg:     cfg,
		hist:    h,
		log:     logger,
		node:    randomID(),
		want:    make(map[string]bool),
		opReady: make(chan struct{}, 1),
		ctx:     ctx,
		cancel:  cancel,
	}
	b.gaps.last = make(map[string]broker.Position)
	return b, nil
}

func randomID() string {
	var id [12]byte
	_, _ = rand.Read(id[:])
	return base64.RawURLEncoding.EncodeToString(id[:])
}

func (b *Broker) keys(stream string) []string {
	base := b.cfg.Prefix + "{" + broker.EncodeName(stream) + "}:"
	return []string{base + "h", base + "e", base + "n", base + "i"}
}

func (b *Broker) channel(stream string) string {
	return b.cfg.Prefix + "c:" + broker.EncodeName(stream)
}

// DefaultIdleExpiry is how long the keys of a stream outlive its last
// publish when history has no TTL: every key this broker writes expires,
// so streams that stop being published never hold Redis memory for good.
const DefaultIdleExpiry = 24 * time.Hour

// keep is how long an idle stream's keys outlive its last message, so that
// a client coming back after the history expired is told the truth
// (nothing missed, or not recovered) for a while, while memory stays
// bounded by the live streams.
func (b *Broker) keep() int64 {
	if b.hist.TTL <= 0 {
		return DefaultIdleExpiry.Milliseconds()
	}
	return (2*b.hist.TTL + time.Minute).Milliseconds()
}

// Start finds out whether Redis is a cluster (see detectMode), creates the
// client and the subscriber loop. A wrong cluster setting is an error; Redis
// being down is not: the node starts, publishes get ErrUnavailable, and the
// broker keeps trying in the background.
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("starting redis broker: %w", broker.ErrUnavailable)
	}
	if b.started {
		b.mu.Unlock()
		return nil
	}
	opts, err := b.cfg.universalOptions()
	if err != nil {
		b.mu.Unlock()
		return err
	}
	b.handler, b.started = h, true
	b.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	m, err := b.detectMode(dctx, opts)
	switch {
	case errors.Is(err, errUndecided):
		b.stats.Errors.Add(1)
		b.log.Warn("redis unreachable: publishes fail until it is back; reconnecting in the background", zap.Error(err))
		b.wg.Add(1)
		go b.connectLoop(opts)
		return nil
	case err != nil:
		return err
	}
	b.useClient(m, opts)
	if m == modeSentinel {
		if err := b.client.Ping(dctx).Err(); err != nil {
			b.stats.Errors.Add(1)
			b.log.Warn("redis sentinel or master unreachable: publishes fail until it is back; reconnecting in the background", zap.Error(err))
		}
	}
	return nil
}

// Publish appends (history on) and publishes data in one atomic script.
// When the script went out but no reply came back (a timeout, a connection
// lost mid-command) the outcome is unknown: it returns ErrMaybeStored, and
// the message, if it was stored, reaches this node's Handler through the
// subscription.
func (b *Broker) Publish(ctx context.Context, stream string, data []byte) (broker.Position, error) {
	b.mu.Lock()
	client, closed, modeErr := b.client, b.closed, b.modeErr
	b.mu.Unlock()
	switch {
	case closed:
		return broker.Position{}, fmt.Errorf("publishing to %q: redis broker not running: %w", stream, broker.ErrUnavailable)
	case modeErr != nil:
		return broker.Position{}, fmt.Errorf("publishing to %q: %w: %w", stream, broker.ErrUnavailable, modeErr)
	case client == nil:
		b.stats.Errors.Add(1)
		return broker.Position{}, fmt.Errorf("publishing to %q: no redis server reached yet: %w", stream, broker.ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	echo := b.echoes.Begin(stream, data)
	pos, err := b.publish(ctx, client, stream, data)
	unknown := err != nil && unknownOutcome(err)
	if held := echo.End(unknown); held != nil {
		b.handler(*held)
	}
	switch {
	case unknown:
		b.stats.Errors.Add(1)
		return broker.Position{}, fmt.Errorf("publishing to %q: %w: %w", stream, broker.ErrMaybeStored, err)
	case err != nil:
		b.stats.Errors.Add(1)
		return broker.Position{}, fmt.Errorf("publishing to %q: %w: %w", stream, broker.ErrUnavailable, err)
	}
	return pos, nil
}

func (b *Broker) publish(ctx context.Context, client goredis.UniversalClient, stream string, data []byte) (broker.Position, error) {
	c := noRetry{client}
	if b.hist.Size <= 0 {
		msg := make([]byte, 0, len(b.node)+4+len(data))
		msg = append(append(append(msg, b.node...), "\n\n0\n"...), data...)
		return broker.Position{}, b.withFailover(ctx, func() error {
			cmd := goredis.NewCmd(ctx, "publish", b.channel(stream), msg)
			return c.Process(ctx, noRetryCmd{cmd})
		})
	}
	var res []any
	err := b.withFailover(ctx, func() error {
		var err error
		res, err = publishScript.Run(ctx, c, b.keys(stream),
			b.channel(stream), b.node, data, b.hist.Size, b.hist.TTL.Milliseconds(), b.keep(), newEpoch()).Slice()
		return err
	})
	if err != nil {
		return broker.Position{}, err
	}
	if len(res) != 2 {
		return broker.Position{}, fmt.Errorf("unexpected script reply %v", res)
	}
	off, _ := res[0].(int64)
	epoch, _ := res[1].(string)
	return broker.Position{Offset: uint64(off), Epoch: epoch}, nil
}

// unknownOutcome reports whether a failed command may have run: it was
// sent (no dial or pool failure, no error reply) but its reply never came.
func unknownOutcome(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	var rerr goredis.Error
	if errors.Is(err, goredis.ErrPoolTimeout) || errors.Is(err, goredis.ErrClosed) || errors.As(err, &rerr) {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		(errors.As(err, &ne) && ne.Timeout()) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// newEpoch is used only when a stream's state is (re)created: the time
// makes it readable in logs, the random part unique across nodes.
func newEpoch() string {
	return strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + randomID()[:8]
}

// Subscribe declares interest; the subscriber connection applies it in the
// background, in order, and Redis' client restores it after reconnects.
// It never blocks on the network.
func (b *Broker) Subscribe(stream string) error {
	return b.queue(stream, true)
}

// Unsubscribe removes interest, like Subscribe.
func (b *Broker) Unsubscribe(stream string) error {
	b.gaps.forget(stream)
	return b.queue(stream, false)
}

func (b *Broker) queue(stream string, sub bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("changing interest in %q: %w", stream, broker.ErrUnavailable)
	}
	if b.want[stream] == sub {
		return nil
	}
	if sub {
		b.want[stream] = true
	} else {
		delete(b.want, stream)
	}
	if b.client == nil {
		return nil // useClient subscribes to every stream of interest
	}
	b.ops = append(b.ops, subOp{sub, b.channel(stream)})
	select {
	case b.opReady <- struct{}{}:
	default:
	}
	return nil
}

// applyOps sends queued (un)subscriptions on the subscriber connection.
// go-redis records the channel set even when the command fails, and
// resubscribes to it on every new connection.
func (b *Broker) applyOps() {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		ops := b.ops
		b.ops = nil
		b.mu.Unlock()
		for _, op := range ops {
			ctx, cancel := context.WithTimeout(b.ctx, b.cfg.Timeout)
			var err error
			if op.subscribe {
				err = b.ps.Subscribe(ctx, op.channel)
			} else {
				err = b.ps.Unsubscribe(ctx, op.channel)
			}
			cancel()
			if err != nil && b.ctx.Err() == nil {
				b.log.Debug("subscription change deferred until redis is back", zap.String("channel", op.channel), zap.Error(err))
			}
		}
		select {
		case <-b.ctx.Done():
			return
		case <-b.opReady:
		}
	}
}

// Close stops the subscriber and closes the clients.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true // no useClient after this
	client, ps := b.client, b.ps
	b.mu.Unlock()
	b.cancel()
	if ps != nil {
		_ = ps.Close()
	}
	b.wg.Wait()
	b.stats.Connected.Store(0)
	if client == nil {
		return nil
	}
	return client.Close()
}

// Stats returns the error, reconnect and gap counters.
func (b *Broker) Stats() broker.Stats { return b.stats.Snapshot() }

// parseWire splits node \n epoch \n offset \n data.
func parseWire(p string) (node, epoch string, off uint64, data []byte, ok bool) {
	parts := strings.SplitN(p, "\n", 4)
	if len(parts) != 4 {
		return "", "", 0, nil, false
	}
	off, err := strconv.ParseUint(parts[2], 10, 64)
	if err != nil {
		return "", "", 0, nil, false
	}
	return parts[0], parts[1], off, []byte(parts[3]), true
}
