package caddyws

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddyws/caddyws/internal/push"
)

// The push collectors live as long as the process (hubs outlive config
// loads); Caddy's registry is new on every load, so they are registered into
// it on every Provision.
var (
	pushConnections = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddyws", Subsystem: "push", Name: "connections",
		Help: "Authenticated subscriber connections, by transport (websocket, sse).",
	}, []string{"hub", "transport"})
	pushSubscriptions = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddyws", Subsystem: "push", Name: "subscriptions",
		Help: "Event subscriptions held by connections.",
	}, []string{"hub"})
	pushPublished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddyws", Subsystem: "push", Name: "published_total",
		Help: "Messages published (once per stream).",
	}, []string{"hub"})
	pushDelivered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddyws", Subsystem: "push", Name: "delivered_total",
		Help: "Messages queued to a connection.",
	}, []string{"hub"})
	pushWritten = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddyws", Subsystem: "push", Name: "written_total",
		Help: "Messages written to a connection's socket.",
	}, []string{"hub"})
	pushDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddyws", Subsystem: "push", Name: "dropped_total",
		Help: "Connections refused or closed by the server, by reason and transport.",
	}, []string{"hub", "reason", "transport"})
	pushLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddyws", Subsystem: "push", Name: "delivery_seconds",
		Help:    "Time from publish to the write of the message to a subscriber.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 13),
	}, []string{"hub"})
)

func registerPushMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{pushConnections, pushSubscriptions, pushPublished,
		pushDelivered, pushWritten, pushDropped, pushLatency} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return fmt.Errorf("registering push metrics: %w", err)
			}
		}
	}
	return nil
}

// hubMetrics binds the collectors to one hub's label.
func hubMetrics(hub string) *push.Metrics {
	return &push.Metrics{
		Connections: func(t push.Transport) prometheus.Gauge {
			return pushConnections.WithLabelValues(hub, string(t))
		},
		Subscriptions: pushSubscriptions.WithLabelValues(hub),
		Published:     pushPublished.WithLabelValues(hub),
		Delivered:     pushDelivered.WithLabelValues(hub),
		Written:       pushWritten.WithLabelValues(hub),
		Dropped: func(reason string, t push.Transport) prometheus.Counter {
			return pushDropped.WithLabelValues(hub, reason, string(t))
		},
		Latency: pushLatency.WithLabelValues(hub),
	}
}
