//go:build race

package e2e

// raceEnabled: under `go test -race` the Caddy under test is race-built too,
// so races in our handlers under real clients fail the test that caused them.
const raceEnabled = true
