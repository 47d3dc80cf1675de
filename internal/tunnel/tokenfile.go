package tunnel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/caddyws/caddyws/internal/fileid"
)

// ErrUnknownToken is returned for a token the token file does not list.
var ErrUnknownToken = errors.New("unknown token")

// ParseTokens reads websockify's token file format: one "token: target" per
// line, where target is "host:port", "[v6]:port" or "unix/<path>"; blank
// lines and lines starting with # are ignored; the separator is the first
// colon followed by white space, so tokens cannot contain ": ". A later line
// for the same token wins, as in websockify. Errors name the line.
func ParseTokens(r io.Reader, name string) (map[string]Target, error) {
	out := make(map[string]Target)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		tok, target, ok := cutColonSpace(s)
		if !ok {
			return nil, fmt.Errorf("%s:%d: want \"token: host:port\"", name, line)
		}
		tok = strings.TrimSpace(tok)
		if tok == "" {
			return nil, fmt.Errorf("%s:%d: empty token", name, line)
		}
		t, err := ParseTarget(target)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		out[tok] = t
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return out, nil
}

// cutColonSpace splits at the first ':' that is followed by white space.
func cutColonSpace(s string) (before, after string, ok bool) {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == ':' && (s[i+1] == ' ' || s[i+1] == '\t') {
			return s[:i], s[i+2:], true
		}
	}
	return "", "", false
}

// TokenFile maps tokens to targets from a websockify token file, or from
// every file in a directory (as websockify's --token-source accepts). It is
// re-read when a file's size, modification time or identity changes, checked
// on each lookup (a stat per tunnel, microseconds), so edits take effect for
// the next connection without a Caddy reload. A file that fails to parse
// leaves the last good mapping in place and the error is reported through
// OnError.
type TokenFile struct {
	path    string
	onError func(error)

	mu      sync.Mutex
	sig     string
	targets map[string]Target
}

// OpenTokenFile reads path (a file or a directory of files) once; an error
// here is a configuration error.
func OpenTokenFile(path string, onError func(error)) (*TokenFile, error) {
	tf := &TokenFile{path: path, onError: onError}
	sig, err := tf.signature()
	if err != nil {
		return nil, err
	}
	m, err := tf.read()
	if err != nil {
		return nil, err
	}
	tf.sig, tf.targets = sig, m
	return tf, nil
}

// Lookup returns the target for token.
func (tf *TokenFile) Lookup(token string) (Target, error) {
	tf.mu.Lock()
	defer tf.mu.Unlock()
	if sig, err := tf.signature(); err != nil {
		tf.report(err)
	} else if sig != tf.sig {
		if m, err := tf.read(); err != nil {
			tf.report(err)
		} else {
			tf.targets = m
		}
		// Remember the signature even on error: the same bad content is
		// reported once, not on every connection.
		tf.sig = sig
	}
	t, ok := tf.targets[token]
	if !ok {
		return Target{}, ErrUnknownToken
	}
	return t, nil
}

// Len is the number of tokens currently known.
func (tf *TokenFile) Len() int {
	tf.mu.Lock()
	defer tf.mu.Unlock()
	return len(tf.targets)
}

func (tf *TokenFile) report(err error) {
	if tf.onError != nil {
		tf.onError(err)
	}
}

func (tf *TokenFile) files() ([]string, error) {
	fi, err := os.Stat(tf.path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	if !fi.IsDir() {
		return []string{tf.path}, nil
	}
	ents, err := os.ReadDir(tf.path)
	if err != nil {
		return nil, fmt.Errorf("token directory: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
			if strings.HasPrefix(e.Name(), ".") {
				continue // editors' swap and temp files
			}
			out = append(out, filepath.Join(tf.path, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

func (tf *TokenFile) signature() (string, error) {
	files, err := tf.files()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		fmt.Fprintf(&b, "%s|%d|%d|%v;", f, fi.Size(), fi.ModTime().UnixNano(), fileid.Of(fi))
	}
	return b.String(), nil
}

func (tf *TokenFile) read() (map[string]Target, error) {
	files, err := tf.files()
	if err != nil {
		return nil, err
	}
	all := make(map[string]Target)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading token file: %w", err)
		}
		m, err := ParseTokens(bytes.NewReader(data), f)
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			all[k] = v
		}
	}
	return all, nil
}
