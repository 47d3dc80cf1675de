package redis

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddyws/caddyws/broker"
)

// TestCredentialsNeverLogged: a Redis URL's password shows neither in
// errors (a malformed URL, an unreachable server) nor in logs.
func TestCredentialsNeverLogged(t *testing.T) {
	const secret = "s3cretPW"
	for _, url := range []string{
		"redis://user:" + secret + "@127.0.0.1:notaport",
		"redis://:" + secret + "@127.0.0.1:1/0",
		"redis://user:" + secret + "@127.0.0.1:1/x",
	} {
		core, logs := observer.New(zap.DebugLevel)
		var seen []string
		b, err := New(Config{URL: url, Timeout: 200 * time.Millisecond}, broker.History{Size: 1}, zap.New(core))
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
				if s, ok := v.(string); ok {
					seen = append(seen, k+"="+s)
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
