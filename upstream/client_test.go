package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
)

// TestClientHTTPS: an https upstream URL is called over TLS, with the credentials in the
// body, the header keys as the docs spell them, and the answer classified.
func TestClientHTTPS(t *testing.T) {
	var got *http.Request
	var body string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, body = r, string(b)
		_, _ = io.WriteString(w, `{"code":200,"message":"success","data":{"packetId":"p-1"}}`)
	}))
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	hc := NewHTTPClient(2*time.Second, 16)
	hc.TLSConfig = &tls.Config{RootCAs: roots}
	c := &Client{HTTP: hc, MIMCURL: srv.URL}
	app := &config.App{Name: "default", MIMC: &config.MIMCCreds{AppID: "2882303761517", AppKey: config.NewSecret("k"), AppSecret: config.NewSecret("s")}}
	spec, _ := jobs.Lookup("p2p")
	o := c.Push(context.Background(), spec, app, []byte(`{"fromAccount":"a","toAccount":"b","msg":"m"}`))
	if o.Kind != Sent || o.PacketID != "p-1" {
		t.Fatalf("outcome %+v %+v", o, o.Err)
	}
	if got.TLS == nil || got.Method != http.MethodPost || got.URL.Path != "/api/push/p2p/" || got.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("request %s %s TLS=%v headers %v", got.Method, got.URL, got.TLS != nil, got.Header)
	}
	if want := `{"appId":2882303761517,"appKey":"k","appSecret":"s","fromAccount":"a","toAccount":"b","msg":"m"}`; body != want {
		t.Fatalf("body %s, want %s", body, want)
	}
}

// TestClientTimeout: an upstream that does not answer within the timeout is a retryable
// "timed out" outcome, returned in about the timeout.
func TestClientTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	c := &Client{HTTP: NewHTTPClient(200*time.Millisecond, 16), MIMCURL: srv.URL}
	app := &config.App{Name: "default", MIMC: &config.MIMCCreds{AppID: "1", AppKey: config.NewSecret("k"), AppSecret: config.NewSecret("s")}}
	spec, _ := jobs.Lookup("p2p")
	start := time.Now()
	o := c.Push(context.Background(), spec, app, []byte(`{}`))
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("took %v", took)
	}
	if o.Kind != Retryable || o.Err.Kind != jobs.KindUpstreamUnavailable || o.Err.Detail != "upstream call timed out" {
		t.Fatalf("outcome %+v %+v", o, o.Err)
	}
}

// TestClientBadProxyKeepsItsPassword: an unusable proxy setting fails every call with a
// message that names the variables, not the proxy URL with its password.
func TestClientBadProxyKeepsItsPassword(t *testing.T) {
	const password = "pr0xy-S3CRET"
	t.Setenv("HTTP_PROXY", "ftp://user:"+password+"@proxy.example:21")
	t.Setenv("HTTPS_PROXY", "ftp://user:"+password+"@proxy.example:21")
	t.Setenv("NO_PROXY", "")
	c := &Client{HTTP: NewHTTPClient(time.Second, 16), MIMCURL: "http://mimc.example"}
	app := &config.App{Name: "default", MIMC: &config.MIMCCreds{AppID: "1", AppKey: config.NewSecret("k"), AppSecret: config.NewSecret("s")}}
	spec, _ := jobs.Lookup("p2p")
	o := c.Push(context.Background(), spec, app, []byte(`{}`))
	if o.Kind != Retryable || o.Err == nil || !strings.Contains(o.Err.Detail, "HTTP_PROXY") || strings.Contains(o.Err.Detail, password) {
		t.Fatalf("outcome %+v %+v", o, o.Err)
	}
}

// TestClientServerClosedIdleConnections: a call after the server has closed its idle
// connections (a restart, an idle timeout) goes out on a new connection, once, instead of
// failing on the closed one and spending one of the job's attempts. A server that closes
// after an unsolicited answer (a 408) is the same.
func TestClientServerClosedIdleConnections(t *testing.T) {
	for _, unsolicited := range []bool{false, true} {
		var calls atomic.Int64
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			_, _ = io.WriteString(w, `{"code":200,"message":"success","data":{"packetId":"p-1"}}`)
		}))
		var conns []net.Conn
		var mu sync.Mutex
		srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}
		srv.Start()
		c := &Client{HTTP: NewHTTPClient(2*time.Second, 16), MIMCURL: srv.URL}
		app := &config.App{Name: "default", MIMC: &config.MIMCCreds{AppID: "1", AppKey: config.NewSecret("k"), AppSecret: config.NewSecret("s")}}
		spec, _ := jobs.Lookup("p2p")
		failed := 0
		const n = 20
		for i := 0; i < n; i++ {
			if o := c.Push(context.Background(), spec, app, []byte(`{}`)); o.Kind != Sent {
				failed++
				t.Logf("call %d: %+v", i, o.Err)
			}
			mu.Lock()
			for _, c := range conns {
				if unsolicited {
					_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
				}
				_ = c.Close()
			}
			conns = nil
			mu.Unlock()
			time.Sleep(freshFor + 10*time.Millisecond) // the FIN arrives, and the connection is checked
		}
		srv.Close()
		if failed != 0 || calls.Load() != n {
			t.Errorf("408 first %v: %d of %d calls failed, the server saw %d", unsolicited, failed, n, calls.Load())
		}
	}
}

// TestClientKeepsConnections: the check before reuse does not cost connections: sequential
// calls over plain HTTP and over TLS (whose handshake leaves session tickets to read) use
// one connection.
func TestClientKeepsConnections(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		var news atomic.Int64
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"code":200,"message":"success","data":{"packetId":"p-1"}}`)
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				news.Add(1)
			}
		}
		hc := NewHTTPClient(2*time.Second, 16)
		if tlsOn {
			srv.StartTLS()
			roots := x509.NewCertPool()
			roots.AddCert(srv.Certificate())
			hc.TLSConfig = &tls.Config{RootCAs: roots}
		} else {
			srv.Start()
		}
		c := &Client{HTTP: hc, MIMCURL: srv.URL}
		app := &config.App{Name: "default", MIMC: &config.MIMCCreds{AppID: "1", AppKey: config.NewSecret("k"), AppSecret: config.NewSecret("s")}}
		spec, _ := jobs.Lookup("p2p")
		for i := 0; i < 20; i++ {
			if o := c.Push(context.Background(), spec, app, []byte(`{}`)); o.Kind != Sent {
				t.Fatalf("TLS %v, call %d: %+v", tlsOn, i, o.Err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		srv.Close()
		if news.Load() != 1 {
			t.Errorf("TLS %v: 20 calls used %d connections", tlsOn, news.Load())
		}
	}
}

// TestClientNeverResendsAPost: a POST the server has read, then closed the connection
// without answering, is a retryable failure and reached the server exactly once (it may have
// been acted on; the worker decides what to do, not the HTTP client) — on a new connection
// and on a kept-alive one.
func TestClientNeverResendsAPost(t *testing.T) {
	var calls atomic.Int64
	var drop atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.ReadAll(r.Body)
		if !drop.Load() {
			_, _ = io.WriteString(w, `{"code":200,"message":"success","data":{"packetId":"p-1"}}`)
			return
		}
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			_ = conn.Close()
		}
	}))
	defer srv.Close()
	c := &Client{HTTP: NewHTTPClient(2*time.Second, 16), MIMCURL: srv.URL}
	app := &config.App{Name: "default", MIMC: &config.MIMCCreds{AppID: "1", AppKey: config.NewSecret("k"), AppSecret: config.NewSecret("s")}}
	spec, _ := jobs.Lookup("p2p")
	call := func(want Kind, wantCalls int64, what string) {
		t.Helper()
		calls.Store(0)
		if o := c.Push(context.Background(), spec, app, []byte(`{}`)); o.Kind != want || calls.Load() != wantCalls {
			t.Fatalf("%s: outcome %v (%+v), the server saw %d calls; want %v, %d", what, o.Kind, o.Err, calls.Load(), want, wantCalls)
		}
	}
	drop.Store(true)
	call(Retryable, 1, "new connection")
	drop.Store(false)
	call(Sent, 1, "answered")
	drop.Store(true)
	call(Retryable, 1, "kept-alive connection")
}
