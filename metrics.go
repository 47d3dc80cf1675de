package caddyws

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// The tunnel collectors live as long as the process, because tunnels outlive
// config reloads; Caddy's metrics registry is new on every config load, so
// they are registered into it on every Provision.
var (
	tunnelsActive = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddyws", Subsystem: "tunnel", Name: "active",
		Help: "Tunnels currently open (upgraded WebSockets, dialling or relaying), by upstream kind: socket or exec.",
	}, []string{"upstream"})
	tunnelsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddyws", Subsystem: "tunnel", Name: "total",
		Help: "Tunnel requests by result: refused_origin, bad_request, unauthorized, refused_target, over_limit, upgrade_failed, dial_failed, start_failed, closed_by_client, closed_by_upstream, closed_by_server; by upstream kind: socket or exec.",
	}, []string{"result", "upstream"})
	tunnelBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddyws", Subsystem: "tunnel", Name: "bytes_total",
		Help: "Bytes relayed by finished tunnels; direction up is client to upstream (a program's input), down is upstream to client; by upstream kind: socket or exec.",
	}, []string{"direction", "upstream"})
	tunnelDial = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddyws", Subsystem: "tunnel", Name: "dial_seconds",
		Help:    "Time to connect to the upstream, successful or not.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 3, 12), // 50µs .. ~9s
	})
)

// Results counted in caddyws_tunnel_total.
const (
	resultRefusedOrigin = "refused_origin"
	resultBadRequest    = "bad_request"
	resultUnauthorized  = "unauthorized"
	resultRefusedTarget = "refused_target"
	resultOverLimit     = "over_limit"
	resultUpgradeFailed = "upgrade_failed"
	resultDialFailed    = "dial_failed"
	resultStartFailed   = "start_failed" // exec: the program could not be started
	resultClosedBy      = "closed_by_"   // + tunnel.EndedBy*
	directionUp         = "up"
	directionDown       = "down"
	upstreamSocket      = "socket" // a TCP or unix socket
	upstreamExec        = "exec"   // a program
)

func registerTunnelMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{tunnelsActive, tunnelsTotal, tunnelBytes, tunnelDial} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return fmt.Errorf("registering tunnel metrics: %w", err)
			}
		}
	}
	return nil
}
