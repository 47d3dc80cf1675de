package testcaddy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// RepoRoot is the root of the caddyws module (this file's grandparent).
var RepoRoot = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}()

var built struct {
	once sync.Once
	path string
	err  error
}

// Binary returns a cmd/caddy binary built from this source tree, with
// -race when the test binary has it (a race in our handlers under real
// clients then shows in Caddy's log). It is built once per test binary and
// kept in the user cache directory under the hash of the sources, so the
// packages of one `go test` run, and later runs on the same tree, share
// it. $CADDYWS_CADDY names a prebuilt binary instead.
func Binary() (string, error) {
	built.once.Do(func() {
		if p := os.Getenv("CADDYWS_CADDY"); p != "" {
			built.path = p
			return
		}
		built.path, built.err = buildCached()
	})
	return built.path, built.err
}

func buildCached() (string, error) {
	key, err := sourceHash()
	if err != nil {
		return "", fmt.Errorf("hashing the sources: %w", err)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "caddyws-testcaddy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating the binary cache: %w", err)
	}
	name := "caddy-" + key
	if Race {
		name += "-race"
	}
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	bin := filepath.Join(dir, name)
	// One build at a time per binary: the packages `go test` runs in
	// parallel wait for the first one's instead of building their own.
	unlock, err := lockFile(bin + ".lock")
	if err != nil {
		return "", fmt.Errorf("locking the binary cache: %w", err)
	}
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	prune(dir, name)
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	args := []string{"build", "-o", tmp}
	if Race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/caddy")
	cmd := exec.Command("go", args...)
	cmd.Dir = RepoRoot
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("storing the built binary: %w", err)
	}
	fmt.Fprintf(os.Stderr, "testcaddy: built cmd/caddy (race=%v) in %s\n", Race, time.Since(start).Round(time.Second))
	return bin, nil
}

// prune removes binaries of other source trees, so the cache holds a few
// hundred megabytes at most.
func prune(dir, keep string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || strings.HasPrefix(e.Name(), keep) {
			continue
		}
		if time.Since(info.ModTime()) > time.Hour {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// sourceHash is the hash of everything that goes into cmd/caddy: the
// module's non-test Go files, go.mod, go.sum, and the toolchain.
func sourceHash() (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, runtime.Version(), runtime.GOOS, runtime.GOARCH, os.Getenv("GOFLAGS"))
	err := filepath.WalkDir(RepoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(RepoRoot, path)
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "node_modules", "integration", "bench", "docs", "client", "examples":
				return filepath.SkipDir
			}
			return nil
		}
		n := d.Name()
		if !(strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go")) && n != "go.mod" && n != "go.sum" {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintln(h, filepath.ToSlash(rel))
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
