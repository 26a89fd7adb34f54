package upstream

import (
	"errors"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// errStaleConn is returned by a kept-alive connection's first write of a request when the
// server has already closed it: nothing was sent, so the request can go out on another
// connection (net/http learns the same from its background read of each idle connection).
var errStaleConn = errors.New("the server closed the kept-alive connection")

// checkedConn is a kept-alive TCP connection that checks, before the first write of each
// request after the first, that the server has not closed it while it sat idle. Without the
// check the request would be written into a closed connection and fail, and a POST that may
// have arrived is never resent: the job would spend an attempt on a server's idle close.
//
// On plain HTTP anything the server sent between an answer and the next request (a 408
// before closing, say) also makes the connection stale. Under TLS it cannot be read from
// here — it may be a session ticket as well as the server's close_notify — so there only
// the close itself (FIN or reset without an alert) is seen.
//
// A connection used again within freshFor of its last answer is not checked: servers close
// connections that sat idle for seconds, and a busy worker reuses its connections within
// milliseconds, where the check (one system call) would cost 2 % of its CPU.
type checkedConn struct {
	*net.TCPConn
	written  bool // the first write happened; tls says whether it began a TLS handshake
	tls      bool
	answered bool      // something was read since the last write: the next write starts a request
	readAt   time.Time // when
}

const freshFor = 50 * time.Millisecond

func (c *checkedConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	c.answered, c.readAt = true, time.Now()
	return n, err
}

func (c *checkedConn) Write(p []byte) (int, error) {
	if !c.written {
		c.written = true
		c.tls = len(p) > 0 && p[0] == 0x16 // a TLS handshake record: ClientHello
	}
	if c.answered {
		c.answered = false
		if time.Since(c.readAt) >= freshFor {
			if closed, pending := peek(c.TCPConn); closed || (pending && !c.tls) {
				return 0, errStaleConn
			}
		}
	}
	return c.TCPConn.Write(p)
}

// checkConns wraps dial so that plain TCP connections are checked before reuse. Others (a
// TLS connection from a proxy dialer) are left as they are.
func checkConns(dial fasthttp.DialFunc) fasthttp.DialFunc {
	return func(addr string) (net.Conn, error) {
		c, err := dial(addr)
		if tc, ok := c.(*net.TCPConn); ok && err == nil {
			return &checkedConn{TCPConn: tc}, nil
		}
		return c, err
	}
}

// retryIfErr resends a request only when nothing of it was sent (a stale connection), or
// when it is idempotent, as fasthttp does by default (at most defaultAttempts calls).
func retryIfErr(req *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	if errors.Is(err, errStaleConn) {
		return false, true
	}
	m := req.Header.Method()
	idempotent := string(m) == fasthttp.MethodGet || string(m) == fasthttp.MethodHead || string(m) == fasthttp.MethodPut
	return false, idempotent && attempts < fasthttp.DefaultMaxIdemponentCallAttempts
}
