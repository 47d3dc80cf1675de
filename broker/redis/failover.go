package redis

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// slotWatcher keeps a Redis Cluster client's slot map current through a
// failover. go-redis reloads the map only on MOVED/ASK or once a minute, and
// a dead master never answers MOVED: without this, the slots of a killed
// master keep pointing at it (every publish to them failing) for up to a
// minute after its replica took over.
type slotWatcher struct {
	b    *Broker
	cc   *goredis.ClusterClient
	kick chan struct{}

	lastErr atomic.Int64 // unix nanoseconds of the last connection error

	mu      sync.Mutex // one reload at a time
	done    time.Time  // when the last reload ended
	masters []string   // the masters of the last reload, sorted
}

// While connection errors keep coming, the map is reloaded every
// refreshEvery, and for refreshFor after the last one: a failover takes
// Redis a few seconds (cluster-node-timeout plus the election), and the
// reload that sees the promoted replica must come right after it.
const (
	refreshEvery = 250 * time.Millisecond
	refreshFor   = 30 * time.Second
)

func newSlotWatcher(b *Broker, cc *goredis.ClusterClient) *slotWatcher {
	return &slotWatcher{b: b, cc: cc, kick: make(chan struct{}, 1)}
}

// connError records that a cluster node could not be reached.
func (w *slotWatcher) connError() {
	w.lastErr.Store(time.Now().UnixNano())
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *slotWatcher) erring() bool {
	return time.Since(time.Unix(0, w.lastErr.Load())) < refreshFor
}

// run reloads the map once at start (to log the masters in use), then
// every refreshEvery while connection errors last.
func (w *slotWatcher) run(ctx context.Context) {
	defer w.b.wg.Done()
	_ = w.refresh(ctx, time.Time{})
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		for w.erring() {
			_ = w.refresh(ctx, time.Time{})
			select {
			case <-ctx.Done():
				return
			case <-time.After(refreshEvery):
			}
		}
	}
}

// refresh reloads the slot map now, unless a reload ended after since
// (concurrent publishes that failed together cause one reload, not many).
func (w *slotWatcher) refresh(ctx context.Context, since time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !since.IsZero() && w.done.After(since) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, w.b.cfg.Timeout)
	defer cancel()
	var mu sync.Mutex
	var masters []string
	// ForEachMaster reloads the map synchronously first (ReloadState only
	// schedules a reload), then lists the masters of the new map.
	err := w.cc.ForEachMaster(ctx, func(_ context.Context, c *goredis.Client) error {
		mu.Lock()
		masters = append(masters, c.Options().Addr)
		mu.Unlock()
		return nil
	})
	w.done = time.Now()
	w.b.stats.Refreshes.Add(1)
	if err != nil {
		if ctx.Err() == nil || w.b.ctx.Err() == nil {
			w.b.stats.Errors.Add(1)
			w.b.log.Warn("reloading the redis cluster slot map failed; retrying while errors last", zap.Error(err))
		}
		return err
	}
	slices.Sort(masters)
	switch {
	case w.masters == nil:
		w.b.log.Info("redis cluster masters in use", zap.Strings("masters", masters))
	case !slices.Equal(masters, w.masters):
		w.b.stats.Failovers.Add(1)
		w.b.log.Warn("redis cluster masters changed: publishes and subscriptions move to the new owners",
			zap.Strings("masters", masters), zap.Strings("before", w.masters))
	}
	w.masters = masters
	return nil
}

// withFailover runs one write. In cluster mode a connection error kicks the
// slot watcher; if the command provably never reached a server (the dial
// failed), the slot map is reloaded and the command runs once more, on the
// slot's new owner. The publish script is not idempotent (it INCRs the
// offset and XADDs), so after any other failure — the command may have run
// and only its reply been lost — it is not retried: the publisher gets a 503
// and decides.
func (b *Broker) withFailover(ctx context.Context, op func() error) error {
	err := op()
	w := b.slots
	if err == nil || w == nil || !isConnErr(err) {
		return err
	}
	failed := time.Now()
	w.connError()
	if !neverSent(err) {
		return err
	}
	if w.refresh(ctx, failed) != nil {
		return err
	}
	b.log.Debug("retrying a publish on the slot's new owner", zap.Error(err))
	return op()
}

// neverSent reports a failure to connect: the command was not sent.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// isConnErr reports errors that mean a node could not be reached (as
// opposed to a refusal by a node that answered).
func isConnErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		strings.HasPrefix(err.Error(), "CLUSTERDOWN")
}

// noRetry runs scripts as commands go-redis will not resend by itself: its
// cluster client retries EOF and timeouts even with retries off, which could
// run the publish script twice.
type noRetry struct{ goredis.UniversalClient }

type noRetryCmd struct{ *goredis.Cmd }

func (noRetryCmd) NoRetry() bool { return true }

func (c noRetry) Eval(ctx context.Context, script string, keys []string, args ...any) *goredis.Cmd {
	return c.eval(ctx, "eval", script, keys, args)
}

func (c noRetry) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *goredis.Cmd {
	return c.eval(ctx, "evalsha", sha1, keys, args)
}

func (c noRetry) eval(ctx context.Context, name, body string, keys []string, args []any) *goredis.Cmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, name, body, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	a = append(a, args...)
	cmd := goredis.NewCmd(ctx, a...)
	if len(keys) > 0 {
		cmd.SetFirstKeyPos(3)
	}
	_ = c.Process(ctx, noRetryCmd{cmd})
	return cmd
}
