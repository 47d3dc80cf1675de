package redis

import (
	"strings"
	"testing"
)

// FuzzParseWire: the wire message a Lua script builds (node \n epoch \n
// offset \n data) parses back to its parts, whatever the data holds.
func FuzzParseWire(f *testing.F) {
	f.Add("node", "epoch", uint64(1), "data")
	f.Add("n", "", uint64(0), "multi\nline\n\ndata")
	f.Add("n", "e", uint64(18446744073709551615), "")
	f.Fuzz(func(t *testing.T, node, epoch string, off uint64, data string) {
		if strings.Contains(node, "\n") || strings.Contains(epoch, "\n") {
			t.Skip() // node ids and epochs are generated without newlines
		}
		wire := node + "\n" + epoch + "\n" + strconvU(off) + "\n" + data
		n, e, o, d, ok := parseWire(wire)
		if !ok || n != node || e != epoch || o != off || string(d) != data {
			t.Fatalf("parseWire(%q) = %q %q %d %q %v", wire, n, e, o, d, ok)
		}
	})
}

func strconvU(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

func TestParseWireRejectsGarbage(t *testing.T) {
	for _, w := range []string{"", "a", "a\nb", "a\nb\nx\nd", "a\nb\n-1\nd"} {
		if _, _, _, _, ok := parseWire(w); ok {
			t.Errorf("parseWire(%q) accepted", w)
		}
	}
}
