//go:build !unix

package upstream

import "net"

// peek cannot look without blocking here: a request on a connection the server has closed
// fails as a retryable call.
func peek(*net.TCPConn) (closed, pending bool) { return false, false }
