package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// mode is how the broker talks to Redis.
type mode int

const (
	modePlain mode = iota
	modeCluster
	modeSentinel
)

func (m mode) String() string {
	return [...]string{"standalone", "cluster", "sentinel"}[m]
}

// errUndecided: no server answered, so the mode is not known yet.
var errUndecided = errors.New("no redis server answered")

// detectMode asks the servers whether they are a Redis Cluster (INFO
// cluster) and checks the answer against the cluster option, so that a
// cluster node is never driven by the plain client (every other publish
// would fail with MOVED) and a standalone server never by the cluster one.
func (b *Broker) detectMode(ctx context.Context, opts *goredis.UniversalOptions) (mode, error) {
	if b.cfg.MasterName != "" {
		return modeSentinel, nil
	}
	var lastErr error
	for _, addr := range opts.Addrs {
		o := opts.Simple()
		o.Addr = addr
		c := goredis.NewClient(o)
		info, err := c.Info(ctx, "cluster").Result()
		_ = c.Close()
		if err != nil {
			var re goredis.Error
			if errors.As(err, &re) && !isConnErr(err) {
				// The server answered but refused INFO (an ACL without it).
				switch b.cfg.Cluster {
				case ClusterOn:
					return modeCluster, nil
				case ClusterOff:
					return modePlain, nil
				}
				return 0, fmt.Errorf("redis broker: asking %s whether it is a Redis Cluster (INFO cluster): %w; allow INFO or set cluster on or off", addr, err)
			}
			lastErr = err
			continue
		}
		enabled := strings.Contains(info, "cluster_enabled:1")
		switch {
		case enabled && b.cfg.Cluster == ClusterOff:
			return 0, fmt.Errorf("redis broker: cluster off, but %s is a Redis Cluster node (cluster_enabled:1): remove cluster off, or point at a standalone server", addr)
		case !enabled && b.cfg.Cluster == ClusterOn:
			return 0, fmt.Errorf("redis broker: cluster on, but %s is not a Redis Cluster node (cluster_enabled:0): remove cluster on, or point at a cluster node", addr)
		case !enabled && len(opts.Addrs) > 1:
			return 0, fmt.Errorf("redis broker: %d addrs given, but %s is not a Redis Cluster node (cluster_enabled:0): give one address for a standalone server, or master_name for Sentinel", len(opts.Addrs), addr)
		case enabled && opts.DB != 0:
			return 0, fmt.Errorf("redis broker: db %d, but %s is a Redis Cluster node (it has only db 0)", opts.DB, addr)
		case enabled:
			return modeCluster, nil
		}
		return modePlain, nil
	}
	return 0, fmt.Errorf("redis broker: finding out whether %s is a Redis Cluster: %w: %w", strings.Join(opts.Addrs, ","), errUndecided, lastErr)
}

// connectLoop retries detectMode with back-off until a server answers,
// then makes the client. Until then publishes fail with 503.
func (b *Broker) connectLoop(opts *goredis.UniversalOptions) {
	defer b.wg.Done()
	wait := b.cfg.ReconnectWait
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-time.After(jitter(wait)):
		}
		wait = min(2*wait, 30*time.Second)
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.Timeout)
		m, err := b.detectMode(ctx, opts)
		cancel()
		switch {
		case b.ctx.Err() != nil:
			return
		case errors.Is(err, errUndecided):
			b.log.Debug("redis still unreachable", zap.Error(err))
			continue
		case err != nil:
			// A wrong cluster setting: publishes keep failing with it.
			b.stats.Errors.Add(1)
			b.setModeErr(err)
			b.log.Error("redis broker misconfigured: publishes fail until the config is fixed", zap.Error(err))
			return
		}
		b.useClient(m, opts)
		return
	}
}

func (b *Broker) setModeErr(err error) {
	b.mu.Lock()
	b.modeErr = err
	b.mu.Unlock()
}

// useClient makes the client for mode m and starts the subscriber loops
// (and, on a cluster, the slot watcher).
func (b *Broker) useClient(m mode, opts *goredis.UniversalOptions) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	opts.IsClusterMode = m == modeCluster
	b.client = goredis.NewUniversalClient(opts)
	b.mode = m
	if cc, ok := b.client.(*goredis.ClusterClient); ok {
		b.slots = newSlotWatcher(b, cc)
		b.wg.Add(1)
		go b.slots.run(b.ctx)
	}
	b.ps = b.client.Subscribe(b.ctx)
	b.ops = b.ops[:0]
	for s := range b.want {
		b.ops = append(b.ops, subOp{true, b.channel(s)})
	}
	b.wg.Add(2)
	go b.applyOps()
	go b.receive()
	b.log.Info("connected to redis", zap.String("mode", m.String()), zap.Strings("addrs", opts.Addrs))
}
