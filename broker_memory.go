package caddyws

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/broker/memory"
)

func init() {
	caddy.RegisterModule(MemoryBroker{})
}

// MemoryBroker is the default websocket_push broker: one node, nothing to
// install. History (when on) lives in this node's memory, so a client can
// recover what it missed only when it reconnects to the same node, and a
// restart of Caddy starts a new epoch (clients are told "not recovered").
type MemoryBroker struct{}

// CaddyModule returns the Caddy module information.
func (MemoryBroker) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "websocket_push.brokers.memory",
		New: func() caddy.Module { return new(MemoryBroker) },
	}
}

// NewBroker returns an in-memory broker bounded by h.
func (MemoryBroker) NewBroker(h broker.History, logger *zap.Logger) (broker.Broker, error) {
	return memory.New(h, logger), nil
}

// UnmarshalCaddyfile sets up the broker from Caddyfile tokens. Syntax:
//
//	broker memory
//
// It takes no arguments and no block.
func (m *MemoryBroker) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("broker memory takes no options, found %q", d.Val())
	}
	return nil
}

// Interface guards
var (
	_ caddy.Module          = (*MemoryBroker)(nil)
	_ BrokerFactory         = (*MemoryBroker)(nil)
	_ caddyfile.Unmarshaler = (*MemoryBroker)(nil)
)
