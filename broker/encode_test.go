package broker

import (
	"regexp"
	"testing"
)

var tokenRE = regexp.MustCompile(`^_[A-Za-z0-9_-]*$`)

func FuzzEncodeName(f *testing.F) {
	for _, s := range []string{"", "user:alice", "a.b", "*", ">", "x y", "ünï ✓", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := EncodeName(s)
		if !tokenRE.MatchString(tok) {
			t.Fatalf("EncodeName(%q) = %q: unsafe characters", s, tok)
		}
		back, err := DecodeName(tok)
		if err != nil || back != s {
			t.Fatalf("DecodeName(EncodeName(%q)) = %q, %v", s, back, err)
		}
	})
}

func TestDecodeNameRejectsForeignTokens(t *testing.T) {
	for _, tok := range []string{"", "abc", "_***"} {
		if _, err := DecodeName(tok); err == nil {
			t.Errorf("DecodeName(%q) accepted", tok)
		}
	}
}
