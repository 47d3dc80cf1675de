package nats

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// errTooFewReplicas: the history stream has fewer replicas than configured.
var errTooFewReplicas = errors.New("jetstream history stream has fewer replicas than configured")

// JetStream API error codes for "cannot place that many replicas".
const (
	jsInsufficientResources = 10023
	jsReplicasNotClustered  = 10074
)

// putStream creates or updates the history stream. With replicas unset, an
// existing stream keeps its replicas and a new one gets 3 on a NATS cluster
// (2 or 1 when JetStream cannot place 3), 1 on a single server: a cluster
// then survives the loss of the server holding the stream.
func (b *Broker) putStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	sc := b.streamConfig()
	if b.cfg.Replicas > 0 {
		s, err := js.CreateOrUpdateStream(ctx, sc)
		if cannotPlace(err) {
			return nil, fmt.Errorf("nats broker: stream %s with replicas %d (does the cluster have that many JetStream servers?): %w: %w",
				b.cfg.Stream, b.cfg.Replicas, errTooFewReplicas, err)
		}
		return s, err
	}
	if s, err := js.Stream(ctx, b.cfg.Stream); err == nil {
		sc.Replicas = s.CachedInfo().Config.Replicas
		return js.CreateOrUpdateStream(ctx, sc)
	}
	tries := []int{1}
	if b.nc.ConnectedClusterName() != "" {
		tries = []int{3, 2, 1}
	}
	var err error
	for _, r := range tries {
		sc.Replicas = r
		var s jetstream.Stream
		if s, err = js.CreateOrUpdateStream(ctx, sc); err == nil {
			b.log.Info("created the jetstream history stream", zap.String("stream", b.cfg.Stream), zap.Int("replicas", r))
			return s, nil
		}
		if !cannotPlace(err) {
			return nil, err
		}
	}
	return nil, err
}

func cannotPlace(err error) bool {
	var ae *jetstream.APIError
	return errors.As(err, &ae) && (ae.ErrorCode == jsInsufficientResources || ae.ErrorCode == jsReplicasNotClustered)
}

// checkReplicas refuses a stream with fewer replicas than the config asks
// for: a silent single copy would lose history with one server.
func (b *Broker) checkReplicas(info *jetstream.StreamInfo) error {
	if b.cfg.Replicas > 0 && info.Config.Replicas < b.cfg.Replicas {
		return fmt.Errorf("nats broker: stream %s has %d replicas, replicas %d configured (does the cluster have that many JetStream servers?): %w",
			b.cfg.Stream, info.Config.Replicas, b.cfg.Replicas, errTooFewReplicas)
	}
	return nil
}
