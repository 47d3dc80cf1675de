package broker

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRedactURLHidesCredentials(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"nats://user:s3cret@h:4222", "nats://REDACTED@h:4222"},
		{"nats://t0ken@h:4222", "nats://REDACTED@h:4222"},
		{"nats://a:1@h1:4222,nats://b:2@h2:4222", "nats://REDACTED@h1:4222,nats://REDACTED@h2:4222"},
		{"redis://:s3cret@h:6379/2", "redis://REDACTED@h:6379/2"},
		{"rediss://u:p@ss@h:6380", "rediss://REDACTED@h:6380"},
		{"redis://h:6379?password=s3cret&db=1", "redis://h:6379?password=REDACTED&db=1"},
		{"u:s3cret@h:6379", "REDACTED@h:6379"},
		{"nats://h:4222", "nats://h:4222"},
		{"nats://h/path@x", "nats://h/path@x"},
		{"", ""},
	} {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedactErrorKeepsTheChain(t *testing.T) {
	raw := "nats://user:s3cret@h:bad"
	err := RedactError(fmt.Errorf("parse %q: %w", raw, ErrUnavailable), raw)
	if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "REDACTED") {
		t.Fatalf("error %q", err)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatal("errors.Is lost the wrapped error")
	}
	if RedactError(nil, raw) != nil {
		t.Fatal("nil error came back non-nil")
	}
}
