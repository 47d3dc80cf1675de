package testcaddy

import (
	"fmt"
	"os"
	"strings"
)

// listeningSockets counts the kernel's TCP sockets listening on port, in
// any process: the sockets themselves, not Caddy's bookkeeping of them,
// which forgets a listener a moment before its socket is closed.
func listeningSockets(port int) int {
	n := 0
	local := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			// sl local_address rem_address st ...; st 0A is LISTEN
			if len(fields) > 3 && strings.HasSuffix(fields[1], local) && fields[3] == "0A" {
				n++
			}
		}
	}
	return n
}
