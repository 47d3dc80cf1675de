package tunnel

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTargetForms(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"127.0.0.1:5900", "127.0.0.1:5900", true},
		{"[::1]:22", "[::1]:22", true},
		{"vnc.internal:5901", "vnc.internal:5901", true},
		{"unix//run/x.sock", "unix//run/x.sock", true},
		{"unix:/run/x.sock", "unix//run/x.sock", true},
		{"unix/", "", false},
		{"host", "", false},
		{"host:0", "", false},
		{"host:65536", "", false},
		{":22", "", false},
		{"a b:22", "", false},
	} {
		got, err := ParseTarget(tt.in)
		if (err == nil) != tt.ok {
			t.Fatalf("%q: err %v, want ok=%v", tt.in, err, tt.ok)
		}
		if tt.ok && got.String() != tt.want {
			t.Fatalf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	return f[host], nil
}

func TestAllowListChecksAddressesNamesPortsAndSockets(t *testing.T) {
	al, err := ParseAllowList([]string{"10.0.0.0/8:5900-5999", "127.0.0.1:22,2222", "[fd00::/8]:22", "*.vnc.internal:5900", "db.internal", "unix//run/ok.sock"})
	if err != nil {
		t.Fatal(err)
	}
	res := fakeResolver{
		"inside.example":  {netip.MustParseAddr("10.1.2.3")},
		"mixed.example":   {netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("8.8.8.8")},
		"outside.example": {netip.MustParseAddr("8.8.8.8")},
	}
	for _, tt := range []struct {
		target string
		ok     bool
		dial   string
	}{
		{"10.9.9.9:5900", true, "10.9.9.9:5900"},
		{"10.9.9.9:6000", false, ""},
		{"11.0.0.1:5900", false, ""},
		{"127.0.0.1:2222", true, "127.0.0.1:2222"},
		{"127.0.0.1:23", false, ""},
		{"[fd00::1]:22", true, "[fd00::1]:22"},
		{"[fe80::1]:22", false, ""},
		{"a.vnc.internal:5900", true, "a.vnc.internal:5900"},
		{"vnc.internal:5900", false, ""},
		{"db.internal:5432", true, "db.internal:5432"},
		{"inside.example:5901", true, "10.1.2.3:5901"}, // pinned to the checked address
		{"mixed.example:5901", false, ""},
		{"outside.example:5901", false, ""},
		{"unix//run/ok.sock", true, "unix//run/ok.sock"},
		{"unix//run/other.sock", false, ""},
	} {
		target, err := ParseTarget(tt.target)
		if err != nil {
			t.Fatal(err)
		}
		got, err := al.Check(context.Background(), res, target)
		if (err == nil) != tt.ok {
			t.Fatalf("%s: err %v, want ok=%v", tt.target, err, tt.ok)
		}
		if tt.ok && got.String() != tt.dial {
			t.Fatalf("%s: dials %s, want %s", tt.target, got, tt.dial)
		}
	}
	if _, err := (&AllowList{}).Check(context.Background(), nil, Target{Network: "tcp", Host: "127.0.0.1", Port: 1}); err == nil {
		t.Fatal("an empty allow list allowed a target")
	}
}

func TestParseAllowListRejectsBadEntries(t *testing.T) {
	for _, e := range []string{"10.0.0.0/33", "host:", "host:0", "host:5-1", "[::1", "unix/", "a*b.example", "*x.example", ":22", "host:x"} {
		if _, err := ParseAllowList([]string{e}); err == nil {
			t.Fatalf("%q accepted", e)
		}
	}
}

func TestParseTokensReadsWebsockifyFormat(t *testing.T) {
	m, err := ParseTokens(strings.NewReader("# comment\n\nvnc1: 10.0.0.1:5900\n  vnc2:\t[::1]:5901  \nsock: unix//run/s\nvnc1: 10.0.0.9:5900\n"), "tokens")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"vnc1": "10.0.0.9:5900", "vnc2": "[::1]:5901", "sock": "unix//run/s"}
	if len(m) != len(want) {
		t.Fatalf("got %v", m)
	}
	for k, v := range want {
		if m[k].String() != v {
			t.Fatalf("%s: got %s, want %s", k, m[k], v)
		}
	}
	for _, bad := range []string{"novalue\n", ": 1.2.3.4:5\n", "t: nohost\n", "t: h:0\n"} {
		if _, err := ParseTokens(strings.NewReader("# ok\n"+bad), "f"); err == nil || !strings.Contains(err.Error(), "f:2") {
			t.Fatalf("%q: error %v does not name f:2", bad, err)
		}
	}
}

func TestTokenFileRereadsOnChangeAndKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "tokens")
	write := func(s string) {
		// Same size and same second would fool a size+mtime check; the
		// rename gives a new inode.
		tmp := f + ".new"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f); err != nil {
			t.Fatal(err)
		}
	}
	write("a: 127.0.0.1:1\n")
	var reported []error
	tf, err := OpenTokenFile(f, func(err error) { reported = append(reported, err) })
	if err != nil {
		t.Fatal(err)
	}
	if tg, err := tf.Lookup("a"); err != nil || tg.Port != 1 {
		t.Fatalf("a: %v %v", tg, err)
	}
	write("a: 127.0.0.1:2\n")
	if tg, _ := tf.Lookup("a"); tg.Port != 2 {
		t.Fatalf("not re-read: %v", tg)
	}
	write("broken\n")
	if tg, _ := tf.Lookup("a"); tg.Port != 2 || len(reported) != 1 {
		t.Fatalf("after a bad edit: %v, reported %v", tg, reported)
	}
	if _, err := tf.Lookup("a"); err != nil || len(reported) != 1 {
		t.Fatalf("the same bad content was reported again: %v", reported)
	}
	// A directory of token files, as websockify accepts.
	d2 := filepath.Join(dir, "d")
	_ = os.Mkdir(d2, 0o700)
	_ = os.WriteFile(filepath.Join(d2, "one"), []byte("x: 127.0.0.1:10\n"), 0o600)
	_ = os.WriteFile(filepath.Join(d2, "two"), []byte("y: 127.0.0.1:11\n"), 0o600)
	td, err := OpenTokenFile(d2, nil)
	if err != nil || td.Len() != 2 {
		t.Fatalf("directory: %v, %d tokens", err, td.Len())
	}
	_ = os.WriteFile(filepath.Join(d2, "three"), []byte("z: 127.0.0.1:12\n"), 0o600)
	if tg, err := td.Lookup("z"); err != nil || tg.Port != 12 {
		t.Fatalf("new file in directory not seen: %v %v", tg, err)
	}
	if _, err := OpenTokenFile(filepath.Join(dir, "missing"), nil); err == nil {
		t.Fatal("a missing token file was accepted")
	}
}

// FuzzTokenFile: the parser never panics, and every target it accepts
// prints back to a form it parses to the same target.
func FuzzTokenFile(f *testing.F) {
	for _, s := range []string{
		"a: 127.0.0.1:5900\n",
		"# c\n\nb:\t[::1]:1\nc: unix//x\n",
		"t: host:65535\r\nu: unix:/y\n",
		"x:y: 1.2.3.4:5\n",
		": \n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ParseTokens(strings.NewReader(in), "fuzz")
		if err != nil {
			return
		}
		for tok, tg := range m {
			if tok == "" || strings.ContainsAny(tok, "\n") {
				t.Fatalf("bad token %q", tok)
			}
			back, err := ParseTarget(tg.String())
			if err != nil || back != tg {
				t.Fatalf("target %+v prints as %q which parses to %+v (%v)", tg, tg.String(), back, err)
			}
		}
	})
}
