//go:build !race

package testcaddy

// Race tells whether this test binary was built with -race; Binary builds
// Caddy the same way.
const Race = false
