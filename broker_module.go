package caddyws

import (
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
)

// BrokerFactory is implemented by the Caddy modules in the
// "websocket_push.brokers" namespace (memory, nats, redis). The push handler
// loads the one its config names (JSON: "broker": {"type": "nats", ...};
// Caddyfile: `broker nats <url> { ... }`, parsed with the module's
// UnmarshalCaddyfile) and asks it for a broker when it creates a hub. Hubs
// outlive config reloads, so the broker is created once per hub, not per
// Provision.
type BrokerFactory interface {
	// NewBroker creates an unstarted broker that keeps history as bounded by h.
	NewBroker(h broker.History, logger *zap.Logger) (broker.Broker, error)
}
