package caddyws

import (
	"errors"
	"fmt"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddyws/caddyws/broker"
)

// Broker metrics. Brokers live in hubs, which outlive config loads, while
// Caddy's metrics registry is new on every load; so live brokers are kept in
// a process-wide set and one collector reads their counters at scrape time:
//
//	caddyws_push_broker_errors_total{broker="nats"}
//	caddyws_push_broker_disconnects_total{broker}
//	caddyws_push_broker_reconnects_total{broker}
//	caddyws_push_broker_gaps_filled_total{broker}
//	caddyws_push_broker_gaps_lost_total{broker}
//	caddyws_push_broker_connected{broker}   (connected nodes' brokers, 0 while down)
//	caddyws_push_broker_topology_refreshes_total{broker}
//	caddyws_push_broker_failovers_total{broker}
var liveBrokers = struct {
	sync.Mutex
	set map[*trackedBroker]struct{}
}{set: make(map[*trackedBroker]struct{})}

// trackedBroker counts a broker in the metrics until it is closed.
type trackedBroker struct {
	broker.Broker
	kind string
	once sync.Once
}

func track(kind string, b broker.Broker) broker.Broker {
	if _, ok := b.(broker.StatsReporter); !ok {
		return b
	}
	t := &trackedBroker{Broker: b, kind: kind}
	liveBrokers.Lock()
	liveBrokers.set[t] = struct{}{}
	liveBrokers.Unlock()
	return t
}

func (t *trackedBroker) Close() error {
	t.once.Do(func() {
		liveBrokers.Lock()
		delete(liveBrokers.set, t)
		liveBrokers.Unlock()
	})
	return t.Broker.Close()
}

// Stats passes the counters through, so the hub or tests can read them.
func (t *trackedBroker) Stats() broker.Stats {
	return t.Broker.(broker.StatsReporter).Stats()
}

type brokerCollector struct {
	errors, disconnects, reconnects, filled, lost, connected, refreshes, failovers *prometheus.Desc
}

var theBrokerCollector = func() *brokerCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("caddyws_push_broker_"+name, help, []string{"broker"}, nil)
	}
	return &brokerCollector{
		errors:      d("errors_total", "Failed broker operations (publish, history, subscriptions, connection)."),
		disconnects: d("disconnects_total", "Connections to the broker server lost."),
		reconnects:  d("reconnects_total", "Connections to the broker server restored."),
		filled:      d("gaps_filled_total", "Gaps in live delivery between nodes filled from history."),
		lost:        d("gaps_lost_total", "Gaps in live delivery between nodes that history could not fill."),
		connected:   d("connected", "Brokers currently connected to their server."),
		refreshes:   d("topology_refreshes_total", "Reloads of the broker servers' topology (Redis Cluster slot map)."),
		failovers:   d("failovers_total", "Changes of the broker servers in use (Redis Cluster masters replaced)."),
	}
}()

func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.errors, c.disconnects, c.reconnects, c.filled, c.lost, c.connected, c.refreshes, c.failovers} {
		ch <- d
	}
}

func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	sums := map[string]broker.Stats{}
	liveBrokers.Lock()
	for t := range liveBrokers.set {
		s, a := t.Stats(), sums[t.kind]
		a.Errors += s.Errors
		a.Disconnects += s.Disconnects
		a.Reconnects += s.Reconnects
		a.GapsFilled += s.GapsFilled
		a.GapsLost += s.GapsLost
		a.Connected += s.Connected
		a.Refreshes += s.Refreshes
		a.Failovers += s.Failovers
		sums[t.kind] = a
	}
	liveBrokers.Unlock()
	for kind, s := range sums {
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(s.Errors), kind)
		ch <- prometheus.MustNewConstMetric(c.disconnects, prometheus.CounterValue, float64(s.Disconnects), kind)
		ch <- prometheus.MustNewConstMetric(c.reconnects, prometheus.CounterValue, float64(s.Reconnects), kind)
		ch <- prometheus.MustNewConstMetric(c.filled, prometheus.CounterValue, float64(s.GapsFilled), kind)
		ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(s.GapsLost), kind)
		ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, float64(s.Connected), kind)
		ch <- prometheus.MustNewConstMetric(c.refreshes, prometheus.CounterValue, float64(s.Refreshes), kind)
		ch <- prometheus.MustNewConstMetric(c.failovers, prometheus.CounterValue, float64(s.Failovers), kind)
	}
}

// registerBrokerMetrics adds the broker collector to this config load's
// registry.
func registerBrokerMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	if err := reg.Register(theBrokerCollector); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return fmt.Errorf("registering broker metrics: %w", err)
		}
	}
	return nil
}
