package exec

import "testing"

func TestParseResize(t *testing.T) {
	for _, c := range []struct {
		in         string
		cols, rows uint16
		ok         bool
	}{
		{`{"type":"resize","cols":80,"rows":24}`, 80, 24, true},
		{` {"rows":1,"cols":10000,"type":"resize"} `, 10000, 1, true},
		{`{"type":"resize","cols":0,"rows":24}`, 0, 0, false},
		{`{"type":"resize","cols":80}`, 0, 0, false},
		{`{"type":"resize","cols":80,"rows":24}{}`, 0, 0, false},
		{`{"type":"exec","cmd":"rm -rf /"}`, 0, 0, false},
		{`ls`, 0, 0, false},
		{`{"type":"resize","cols":70000,"rows":24}`, 0, 0, false},
	} {
		cols, rows, err := ParseResize([]byte(c.in))
		if (err == nil) != c.ok || cols != c.cols || rows != c.rows {
			t.Errorf("%s: %d %d %v", c.in, cols, rows, err)
		}
	}
}

func FuzzParseResize(f *testing.F) {
	f.Add([]byte(`{"type":"resize","cols":80,"rows":24}`))
	f.Add([]byte(`{"type":"resize","cols":-1,"rows":1e9}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, p []byte) {
		cols, rows, err := ParseResize(p)
		if err == nil && (cols < 1 || rows < 1 || cols > 10000 || rows > 10000) {
			t.Fatalf("accepted %q as %dx%d", p, cols, rows)
		}
		if err != nil && len(err.Error()) > 100 {
			t.Fatalf("reason too long for a close frame: %q", err)
		}
	})
}
