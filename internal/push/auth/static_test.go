package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestTokenIsUser(t *testing.T) {
	tests := []struct {
		token string
		ok    bool
	}{
		{"alice", true},
		{"user-42@example.com", true},
		{"ünïcode", true},
		{"", false},
		{"has space", false},
		{"tab\there", false},
		{"nl\n", false},
		{"nul\x00", false},
		{"bad\xffutf8", false},
		{strings.Repeat("a", MaxUserLength), true},
		{strings.Repeat("a", MaxUserLength+1), false},
	}
	for _, tc := range tests {
		id, err := TokenIsUser{}.Verify(context.Background(), tc.token)
		if tc.ok {
			if err != nil || id.User != tc.token || id.Events != nil {
				t.Errorf("%q: got %+v %v, want the token as user with any event", tc.token, id, err)
			}
		} else if !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%q: err = %v, want ErrUnauthorized", tc.token, err)
		}
	}
}
