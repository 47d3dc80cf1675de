package caddyws

// What happens to open tunnels when a config is unloaded: they live in a
// process-wide registry rather than in the handler, so that a reload does
// not cut them (caddy#5471); stopping Caddy closes them all with 1001.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyws/caddyws/internal/tunnel"
)

var errConnRefused = syscall.ECONNREFUSED

// sessionRegistry holds every open tunnel with the handler that opened it.
type sessionRegistry struct {
	mu sync.Mutex
	m  map[*tunnel.Session]*Tunnel
}

var sessions = &sessionRegistry{m: make(map[*tunnel.Session]*Tunnel)}

func (r *sessionRegistry) add(s *tunnel.Session, owner *Tunnel) (remove func()) {
	r.mu.Lock()
	r.m[s] = owner
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.m, s)
		r.mu.Unlock()
	}
}

// owned lists the sessions of owner, or all of them when owner is nil.
func (r *sessionRegistry) owned(owner *Tunnel) []*tunnel.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tunnel.Session
	for s, o := range r.m {
		if owner == nil || o == owner {
			out = append(out, s)
		}
	}
	return out
}

// shutdown sends every session of owner (nil: all) a close frame, in
// parallel because a session whose client does not read can hold its
// writer for a second, and then waits up to wait for them to end, so that
// a process about to exit does not reset sockets before the close frames
// are read.
func (r *sessionRegistry) shutdown(owner *Tunnel, code int, reason string, wait time.Duration) {
	list := r.owned(owner)
	var wg sync.WaitGroup
	for _, s := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Shutdown(code, reason)
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(wait)
	for len(r.owned(owner)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

var exitHook sync.Once

// caddyStopping tells a stop from a reload inside Cleanup: Caddy swaps in
// the new config before cleaning up the old one, while Stop (and process
// exit) clear the active config first.
func caddyStopping() bool {
	return caddy.Exiting() || caddy.ActiveContext().Context == nil
}

// Cleanup runs when the config that holds this handler is unloaded.
func (t *Tunnel) Cleanup() error {
	if t.counterID != "" {
		_, _ = counters.Delete(t.counterID)
	}
	if t.ticketsID != "" {
		_, _ = verifiers.Delete(t.ticketsID)
	}
	if caddyStopping() {
		// Tunnels of older configs kept across reloads go too.
		sessions.shutdown(nil, tunnel.CloseGoingAway, "server stopping", 3*time.Second)
		return nil
	}
	if t.CloseDelay == nil {
		return nil // keep this config's tunnels until they end
	}
	time.AfterFunc(time.Duration(*t.CloseDelay), func() {
		sessions.shutdown(t, tunnel.CloseGoingAway, "configuration unloaded", 0)
	})
	return nil
}

// registerExitHook closes every tunnel when the process exits, even one
// whose handler is no longer in the running config.
func registerExitHook() {
	exitHook.Do(func() {
		caddy.OnExit(func(context.Context) {
			sessions.shutdown(nil, tunnel.CloseGoingAway, "server stopping", 3*time.Second)
		})
	})
}

// connCounter counts the open tunnels of one handler configuration. It is
// kept in a UsagePool keyed by the configuration, so the count carries over
// a reload that keeps the handler as it was and max_connections holds
// across reloads.
type connCounter struct{ n atomic.Int64 }

func (c *connCounter) Destruct() error { return nil }

func (c *connCounter) acquire(limit int) bool {
	if c.n.Add(1) > int64(limit) && limit > 0 {
		c.n.Add(-1)
		return false
	}
	return true
}

func (c *connCounter) release() { c.n.Add(-1) }

var counters = caddy.NewUsagePool()

func acquireCounter(t *Tunnel) (string, *connCounter) {
	cfg, _ := json.Marshal(t)
	key := "websocket_tunnel:" + string(cfg)
	v, _, _ := counters.LoadOrNew(key, func() (caddy.Destructor, error) { return new(connCounter), nil })
	return key, v.(*connCounter)
}

// pooledVerifier keeps a ticket verifier, and with it the record of
// single-use tickets already spent, across reloads that keep the same key:
// a reload must not make a used ticket valid again.
type pooledVerifier struct{ *tunnel.TicketVerifier }

func (pooledVerifier) Destruct() error { return nil }

var verifiers = caddy.NewUsagePool()

func acquireTicketVerifier(material []byte, alg, source string) (string, *tunnel.TicketVerifier, error) {
	sum := sha256.Sum256(append([]byte(alg+"\x00"), material...))
	key := "websocket_tunnel_ticket:" + hex.EncodeToString(sum[:])
	v, _, err := verifiers.LoadOrNew(key, func() (caddy.Destructor, error) {
		tv, err := tunnel.NewTicketVerifier(material, alg, source, 5*time.Second)
		if err != nil {
			return nil, err
		}
		return pooledVerifier{tv}, nil
	})
	if err != nil {
		return "", nil, err
	}
	return key, v.(pooledVerifier).TicketVerifier, nil
}
