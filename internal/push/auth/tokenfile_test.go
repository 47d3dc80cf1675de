package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseTokenFile(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]Identity
		wantErr string
	}{
		{"users and events", "# tokens\n\nt1: alice\nt2: bob news,chat\n  t3 :  carol  news , chat \nt4: dave -\n",
			map[string]Identity{
				"t1": {User: "alice"},
				"t2": {User: "bob", Events: []string{"news", "chat"}},
				"t3": {User: "carol", Events: []string{"news", "chat"}},
				"t4": {User: "dave", Events: []string{}},
			}, ""},
		{"crlf, bom, trailing comment", "\xef\xbb\xbft1: alice # the admin\r\n\t# indented comment\r\nt2: bob a#b\r\n",
			map[string]Identity{"t1": {User: "alice"}, "t2": {User: "bob", Events: []string{"a#b"}}}, ""},
		{"user may hold a colon", "t1: org:alice\n", map[string]Identity{"t1": {User: "org:alice"}}, ""},
		{"empty file", "", map[string]Identity{}, ""},
		{"no colon", "t1: alice\nt2 bob\n", nil, "line 2: want"},
		{"empty token", "\n: alice\n", nil, "line 2: empty token"},
		{"token with blank", "a b: alice\n", nil, "line 1: token contains a blank"},
		{"no user", "t1:   \n", nil, "line 1: no user"},
		{"duplicate token", "t1: alice\n# x\nt1: bob\n", nil, "line 3: token already defined on line 1"},
		{"empty event", "t1: alice news,,chat\n", nil, "line 1: empty event name"},
		{"event with blank", "t1: alice news chat\n", nil, "line 1: event name \"news chat\" contains a blank"},
		{"invalid utf-8", "t1: al\xffice\n", nil, "not valid UTF-8"},
		{"control char in user", "t1: al\x01ice\n", nil, "line 1: user contains a control"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTokenFile([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Write then rename, as editors and config tools do, so a reader never
	// sees a half-written file in this test.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestTokenFileVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, path, "tok-a: alice\ntok-b: bob news\n")
	v, err := NewTokenFile(TokenFileConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		token  string
		user   string
		events []string
		err    error
	}{
		{"tok-a", "alice", nil, nil},
		{"tok-b", "bob", []string{"news"}, nil},
		{"tok-c", "", nil, ErrUnauthorized},
		{"", "", nil, ErrUnauthorized},
		{"tok-a ", "", nil, ErrUnauthorized},
	}
	for _, tc := range tests {
		id, err := v.Verify(context.Background(), tc.token)
		if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("%q: err = %v, want %v", tc.token, err, tc.err)
			continue
		}
		if id.User != tc.user || !reflect.DeepEqual(id.Events, tc.events) {
			t.Errorf("%q: got %+v, want user %q events %v", tc.token, id, tc.user, tc.events)
		}
	}
	// Callers altering the returned events must not alter the table.
	id, _ := v.Verify(context.Background(), "tok-b")
	id.Events[0] = "hacked"
	if id, _ := v.Verify(context.Background(), "tok-b"); id.Events[0] != "news" {
		t.Fatalf("table altered through a returned identity: %v", id.Events)
	}
}

func TestTokenFileReloadsOnChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, path, "old: alice\n")
	v, err := NewTokenFile(TokenFileConfig{Path: path, CheckInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := v.Verify(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "new: bob\n")
	waitFor(t, func() bool { _, err := v.Verify(ctx, "new"); return err == nil })
	if _, err := v.Verify(ctx, "old"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("removed token still accepted: %v", err)
	}

	// A broken edit keeps the previous table and reports the line.
	writeFile(t, path, "new: bob\nbroken line\n")
	waitFor(t, func() bool { _, _ = v.Verify(ctx, "new"); return v.Err() != nil })
	if !strings.Contains(v.Err().Error(), "line 2") {
		t.Fatalf("Err() = %v, want the line number", v.Err())
	}
	if id, err := v.Verify(ctx, "new"); err != nil || id.User != "bob" {
		t.Fatalf("previous table lost after a bad edit: %+v %v", id, err)
	}

	// In-place rewrite (same inode), then the error clears.
	if err := os.WriteFile(path, []byte("new: bob\nthird: carol a,b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := v.Verify(ctx, "third"); return err == nil })
	if v.Err() != nil {
		t.Fatalf("Err() = %v after a good reload", v.Err())
	}

	// A deleted file keeps the table (delete is not a way to revoke).
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, _ = v.Verify(ctx, "third"); return v.Err() != nil })
	if _, err := v.Verify(ctx, "third"); err != nil {
		t.Fatalf("table lost after the file was removed: %v", err)
	}
}

func TestTokenFileConcurrentVerifyDuringReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, path, "stable: alice\n")
	v, err := NewTokenFile(TokenFileConfig{Path: path, CheckInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if id, err := v.Verify(context.Background(), "stable"); err != nil || id.User != "alice" {
					t.Errorf("stable token: %+v %v", id, err)
					return
				}
			}
		})
	}
	for i := range 50 {
		writeFile(t, path, "stable: alice\nextra"+strings.Repeat("x", i)+": bob\n")
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
}

func TestNewTokenFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewTokenFile(TokenFileConfig{Path: filepath.Join(dir, "missing")}); err == nil {
		t.Fatal("missing file accepted")
	}
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "ok: alice\nnope\n")
	if _, err := NewTokenFile(TokenFileConfig{Path: bad}); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("err = %v, want line 2", err)
	}
	if _, err := NewTokenFile(TokenFileConfig{}); err == nil {
		t.Fatal("empty path accepted")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// FuzzTokenFile checks the parser never panics, and that whatever it
// accepts is well-formed: non-empty blank-free tokens and users, and
// non-empty blank-free events.
func FuzzTokenFile(f *testing.F) {
	for _, s := range []string{
		"t1: alice\nt2: bob news,chat\n",
		"# c\n\n  t3 : carol  a , b # trailing\r\n",
		"t: u -\n", "\xef\xbb\xbft: u\n", ":\n", "a:b:c d,e\n", "x: y ,\n", "t1: a\nt1: b\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		table, err := ParseTokenFile(data)
		if err != nil {
			if table != nil {
				t.Fatal("table returned with an error")
			}
			return
		}
		for tok, id := range table {
			if tok == "" || strings.ContainsAny(tok, " \t\r\n:") || strings.HasPrefix(tok, "#") {
				t.Fatalf("bad token %q accepted", tok)
			}
			if id.User == "" || strings.ContainsAny(id.User, " \t\r\n") {
				t.Fatalf("bad user %q accepted", id.User)
			}
			for _, e := range id.Events {
				if e == "" || strings.ContainsAny(e, " \t\r\n,") {
					t.Fatalf("bad event %q accepted", e)
				}
			}
		}
	})
}
