package nats

import (
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/broker/brokertest"
)

// TestCredentialsNeverLogged: a NATS URL with a password or a token never
// shows in this broker's logs or errors, whether the server is unreachable
// or the URL is malformed.
func TestCredentialsNeverLogged(t *testing.T) {
	const secret = "s3cretPW"
	brokertest.SecretNeverShown(t, secret, []string{
		"nats://user:" + secret + "@127.0.0.1:1",
		"nats://" + secret + "@127.0.0.1:1",
		"nats://user:" + secret + "@127.0.0.1:notaport",
		"http://user:" + secret + "@127.0.0.1:1",
	}, func(url string, log *zap.Logger) (broker.Broker, error) {
		return New(Config{URL: url, Timeout: 200 * time.Millisecond, ReconnectWait: 50 * time.Millisecond}, broker.History{Size: 1}, log)
	})
}
