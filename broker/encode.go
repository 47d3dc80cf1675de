package broker

import (
	"encoding/base64"
	"fmt"
)

// EncodeName turns any stream name into a token made only of [A-Za-z0-9_-],
// never empty, safe as one NATS subject token or inside a Redis key or
// channel: "_" followed by the unpadded base64url of the name. Encoding
// keeps names apart that a character substitution would merge ("a.b" and
// "a_b"), and wildcards ("*", ">") lose their meaning.
func EncodeName(stream string) string {
	return "_" + base64.RawURLEncoding.EncodeToString([]byte(stream))
}

// DecodeName reverses EncodeName.
func DecodeName(token string) (string, error) {
	if len(token) == 0 || token[0] != '_' {
		return "", fmt.Errorf("decoding stream token %q: missing prefix", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(token[1:])
	if err != nil {
		return "", fmt.Errorf("decoding stream token %q: %w", token, err)
	}
	return string(b), nil
}
