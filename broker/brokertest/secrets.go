package brokertest

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddyws/caddyws/broker"
)

// SecretNeverShown opens a broker for each url (which carries secret as a
// password or token), starts it and publishes once, and fails t when
// secret appears in an error or in any log message or field. Brokers that
// cannot reach a server must still say something: a broker that logs and
// returns nothing fails too, since the check would see nothing.
func SecretNeverShown(t *testing.T, secret string, urls []string, open func(url string, log *zap.Logger) (broker.Broker, error)) {
	t.Helper()
	for _, url := range urls {
		core, logs := observer.New(zap.DebugLevel)
		var seen []string
		b, err := open(url, zap.New(core))
		if err != nil {
			seen = append(seen, err.Error())
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := b.Start(ctx, func(broker.Message) {}); err != nil {
				seen = append(seen, err.Error())
			}
			if _, err := b.Publish(ctx, "s", []byte("x")); err != nil {
				seen = append(seen, err.Error())
			}
			cancel()
			_ = b.Close()
		}
		for _, e := range logs.All() {
			seen = append(seen, e.Message)
			for k, v := range e.ContextMap() {
				switch v := v.(type) {
				case string:
					seen = append(seen, k+"="+v)
				case error:
					seen = append(seen, k+"="+v.Error())
				}
			}
		}
		if len(seen) == 0 {
			t.Fatalf("%s: nothing logged or returned; the test sees nothing", broker.RedactURL(url))
		}
		for _, s := range seen {
			if strings.Contains(s, secret) {
				t.Errorf("%s: credentials in %q", broker.RedactURL(url), s)
			}
		}
	}
}
