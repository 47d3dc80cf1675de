package redis

import (
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/broker/brokertest"
)

// TestCredentialsNeverLogged: a Redis URL's password shows neither in
// errors (a malformed URL, an unreachable server) nor in logs.
func TestCredentialsNeverLogged(t *testing.T) {
	const secret = "s3cretPW"
	brokertest.SecretNeverShown(t, secret, []string{
		"redis://user:" + secret + "@127.0.0.1:notaport",
		"redis://:" + secret + "@127.0.0.1:1/0",
		"redis://user:" + secret + "@127.0.0.1:1/x",
	}, func(url string, log *zap.Logger) (broker.Broker, error) {
		return New(Config{URL: url, Timeout: 200 * time.Millisecond}, broker.History{Size: 1}, log)
	})
}
