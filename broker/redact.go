package broker

import (
	"strings"
)

// redacted stands in for a secret in logs and errors.
const redacted = "REDACTED"

// RedactURL returns raw (one broker URL, or several separated by commas)
// fit for logs and errors: the userinfo of each URL (user and password, or
// a bare token, as in nats://TOKEN@host) becomes REDACTED, and so do the
// values of query parameters that name a secret (password, token...). It
// works on text that does not parse as a URL too.
func RedactURL(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return strings.Join(parts, ",")
}

func redactOne(u string) string {
	rest := u
	head := ""
	if i := strings.Index(u, "://"); i >= 0 {
		head, rest = u[:i+3], u[i+3:]
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		rest = redacted + rest[at:]
	}
	q := strings.Index(rest, "?")
	if q < 0 {
		return head + rest
	}
	query, frag := rest[q+1:], ""
	if h := strings.Index(query, "#"); h >= 0 {
		query, frag = query[:h], query[h:]
	}
	kv := strings.Split(query, "&")
	for i, p := range kv {
		k, _, ok := strings.Cut(p, "=")
		if ok && secretKey(k) {
			kv[i] = k + "=" + redacted
		}
	}
	return head + rest[:q+1] + strings.Join(kv, "&") + frag
}

func secretKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"pass", "token", "secret", "key", "auth", "cred"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// RedactError returns err with every occurrence of raw (a URL that may
// carry credentials) in its message replaced by RedactURL(raw), and the
// URL's userinfo wherever it appears alone. errors.Is and errors.As still
// see err. It returns nil for nil.
func RedactError(err error, raw string) error {
	if err == nil || raw == "" {
		return err
	}
	msg := err.Error()
	out := strings.ReplaceAll(msg, raw, RedactURL(raw))
	for _, p := range strings.Split(raw, ",") {
		if s := userinfo(p); s != "" {
			out = strings.ReplaceAll(out, s, redacted)
		}
	}
	if out == msg {
		return err
	}
	return &redactedError{msg: out, err: err}
}

// userinfo returns the text between "://" and the last "@" of the
// authority, "" when there is none.
func userinfo(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	if end := strings.IndexAny(u, "/?#"); end >= 0 {
		u = u[:end]
	}
	if at := strings.LastIndex(u, "@"); at > 0 {
		return u[:at]
	}
	return ""
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

// Unwrap keeps errors.Is/As working; the message callers print is the
// redacted one.
func (e *redactedError) Unwrap() error { return e.err }
