//go:build unix

package upstream

import (
	"net"
	"syscall"
)

// peek looks at the connection without blocking or consuming: closed when the server's FIN
// or a reset is all there is, pending when bytes wait to be read.
func peek(c *net.TCPConn) (closed, pending bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return false, false
	}
	var b [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = (n == 0 && err == nil) || err == syscall.ECONNRESET
		pending = n > 0
		return true
	})
	return closed, pending
}
