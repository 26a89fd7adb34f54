package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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
