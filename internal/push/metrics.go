package push

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the collectors a hub updates, already bound to the hub's
// labels by the caller. NewMetrics returns unregistered ones, for tests and
// for hubs whose metrics nobody scrapes.
type Metrics struct {
	// Connections counts registered connections by transport.
	Connections   func(t Transport) prometheus.Gauge
	Subscriptions prometheus.Gauge
	Published     prometheus.Counter
	// Delivered counts frames queued to a connection; Written counts those
	// written to its socket.
	Delivered prometheus.Counter
	Written   prometheus.Counter
	// Dropped counts connections the server closed (or refused), by reason:
	// slow, dead_peer, max_connections, max_per_user, max_events,
	// unauthorized, auth_timeout, auth_unavailable, history_unavailable, bad_frame,
	// frame_too_big, admin, other; and by transport.
	Dropped func(reason string, t Transport) prometheus.Counter
	// Latency observes seconds from publish to the write of the frame.
	Latency prometheus.Observer
}

// NewMetrics returns collectors registered nowhere.
func NewMetrics() *Metrics {
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dropped"}, []string{"reason", "transport"})
	conns := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "connections"}, []string{"transport"})
	return &Metrics{
		Connections:   func(t Transport) prometheus.Gauge { return conns.WithLabelValues(string(t)) },
		Subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "subscriptions"}),
		Published:     prometheus.NewCounter(prometheus.CounterOpts{Name: "published"}),
		Delivered:     prometheus.NewCounter(prometheus.CounterOpts{Name: "delivered"}),
		Written:       prometheus.NewCounter(prometheus.CounterOpts{Name: "written"}),
		Dropped:       func(r string, t Transport) prometheus.Counter { return dropped.WithLabelValues(r, string(t)) },
		Latency:       prometheus.NewHistogram(prometheus.HistogramOpts{Name: "latency"}),
	}
}

func (m *Metrics) dropped(reason string, t Transport) { m.Dropped(reason, t).Inc() }
