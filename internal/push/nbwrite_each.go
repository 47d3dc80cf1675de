//go:build unix && !(linux && (amd64 || arm64 || loong64 || mips64 || mips64le || ppc64 || ppc64le || riscv64 || s390x))

package push

// tryWriteAll makes each write one system call: other systems than Linux,
// and 32-bit Linux.
func tryWriteAll(ws []nbWrite) { tryWriteEach(ws) }

// RingWrites tells whether writes are batched through io_uring: not on
// this system.
func RingWrites() (bool, error) { return false, errNoRing }
