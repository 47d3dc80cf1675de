package nats

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddyws/caddyws/broker"
)

// TestCredentialsNeverLogged: a NATS URL with a password or a token never
// shows in this broker's logs or errors, whether the server is unreachable
// or the URL is malformed.
func TestCredentialsNeverLogged(t *testing.T) {
	const secret = "s3cretPW"
	for _, url := range []string{
		"nats://user:" + secret + "@127.0.0.1:1",
		"nats://" + secret + "@127.0.0.1:1",
		"nats://user:" + secret + "@127.0.0.1:notaport",
		"http://user:" + secret + "@127.0.0.1:1",
	} {
		core, logs := observer.New(zap.DebugLevel)
		var errs []string
		b, err := New(Config{URL: url, Timeout: 200 * time.Millisecond, ReconnectWait: 50 * time.Millisecond}, broker.History{Size: 1}, zap.New(core))
		if err != nil {
			errs = append(errs, err.Error())
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := b.Start(ctx, func(broker.Message) {}); err != nil {
				errs = append(errs, err.Error())
			}
			if _, err := b.Publish(ctx, "s", []byte("x")); err != nil {
				errs = append(errs, err.Error())
			}
			cancel()
			_ = b.Close()
		}
		for _, e := range logs.All() {
			errs = append(errs, e.Message)
			for k, v := range e.ContextMap() {
				errs = append(errs, k+"="+toString(v))
			}
		}
		if len(errs) == 0 {
			t.Fatalf("%s: nothing logged or returned; the test sees nothing", url)
		}
		for _, s := range errs {
			if strings.Contains(s, secret) {
				t.Errorf("%s: credentials in %q", broker.RedactURL(url), s)
			}
		}
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if e, ok := v.(error); ok {
		return e.Error()
	}
	return ""
}
