package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpproxy"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
)

// defaultTimeout bounds a call when the client has no ReadTimeout of its own.
const defaultTimeout = 10 * time.Second

// maxAnswerBytes bounds how much of an upstream answer is read.
const maxAnswerBytes = 4 << 20

// NewHTTPClient returns the client every upstream call goes through: fasthttp, because a
// call then costs one write and one read in the caller's goroutine (net/http hands each
// request to two connection goroutines, which was a quarter of the worker's CPU per job).
// Keep-alive connections are sized to the worker's concurrency; timeout bounds each call;
// HTTP_PROXY, HTTPS_PROXY and NO_PROXY are honoured as net/http does.
func NewHTTPClient(timeout time.Duration, conns int) *fasthttp.Client {
	if conns < 16 {
		conns = 16
	}
	d := &fasthttpproxy.Dialer{Timeout: 5 * time.Second, DialDualStack: true}
	dial, err := d.GetDialFunc(true)
	if err != nil {
		// The error quotes the proxy URL, which may hold a user and password: name the
		// variables, not their values, since this text reaches results, the DLQ and logs.
		dial = func(string) (net.Conn, error) {
			return nil, errors.New("HTTP_PROXY, HTTPS_PROXY or NO_PROXY is not a valid proxy setting")
		}
	}
	return &fasthttp.Client{
		Dial:            checkConns(dial),
		MaxConnsPerHost: conns,
		// A request is resent on another connection when nothing of it was sent (the server
		// had closed the kept-alive one), as often as there are pooled connections.
		RetryIfErr:                retryIfErr,
		MaxIdemponentCallAttempts: conns + fasthttp.DefaultMaxIdemponentCallAttempts,
		MaxConnWaitTimeout:        timeout,
		// Shorter than the keep-alive of common servers (Node.js and Apache close idle
		// connections after 5 s), so a call rarely goes out on a connection the server is
		// closing at that moment: a POST that was sent is never resent, as it may have arrived.
		MaxIdleConnDuration: 4 * time.Second,
		ReadTimeout:         timeout,
		WriteTimeout:        timeout,
		MaxResponseBodySize: maxAnswerBytes,
		// Header keys are sent as given: the upstream docs spell them appId, app_id, access-token.
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
		Name:                          "pushworker",
	}
}

// MIMCAuth says where MIMC credentials go.
type MIMCAuth int

// MIMC credential placements.
const (
	AuthBody   MIMCAuth = iota // appId/appKey/appSecret fields of the JSON body (push API)
	AuthHeader                 // appId/appKey/appSecret headers (topic API)
)

// Request is one upstream call before credentials are added.
type Request struct {
	Upstream string // jobs.UpstreamMIMC or jobs.UpstreamNotify
	Method   string
	Path     string
	Query    url.Values
	Header   http.Header
	Body     []byte // JSON object without credentials, or nil
	Auth     MIMCAuth
	Shape    jobs.Shape
}

// Client calls the upstreams with an app's credentials.
type Client struct {
	HTTP      *fasthttp.Client
	MIMCURL   string
	NotifyURL string
	// Scrub, when set, removes configured secrets from every outcome's detail and message:
	// an upstream that echoes a credential back must not put it into a result, a DLQ
	// entry, a log line or /readyz.
	Scrub *config.Scrubber

	hostsOnce            sync.Once
	mimcHost, notifyHost string
	heads                sync.Map // *config.MIMCCreds → mimcHead
}

// Host returns the host an upstream's calls go to (the breaker key). The URLs are parsed
// once: this is asked for every job.
func (c *Client) Host(upstream string) string {
	c.hostsOnce.Do(func() {
		c.mimcHost, c.notifyHost = hostOf(c.MIMCURL), hostOf(c.NotifyURL)
	})
	if upstream == jobs.UpstreamNotify {
		return c.notifyHost
	}
	return c.mimcHost
}

func hostOf(base string) string {
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		return u.Host
	}
	return base
}

// Push sends one call of a job.
func (c *Client) Push(ctx context.Context, spec *jobs.Spec, app *config.App, body []byte) Outcome {
	return c.Do(ctx, app, Request{Upstream: spec.Upstream, Method: http.MethodPost, Path: spec.Path, Body: body, Shape: spec.Shape})
}

// Do sends r with app's credentials and classifies the answer.
func (c *Client) Do(ctx context.Context, app *config.App, r Request) Outcome {
	o := c.do(ctx, app, r)
	if c.Scrub != nil {
		if o.Err != nil {
			o.Err.Detail = c.Scrub.String(o.Err.Detail)
		}
		if o.Answer != nil {
			o.Answer.Message = c.Scrub.String(o.Answer.Message)
		}
	}
	return o
}

func (c *Client) do(ctx context.Context, app *config.App, r Request) Outcome {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer func() {
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}()
	if err := c.build(req, app, r); err != nil {
		return Outcome{Kind: Permanent, Err: jobs.Errorf(jobs.KindUnknownApp, err.Error())}
	}
	timeout := c.HTTP.ReadTimeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.HTTP.DoDeadline(req, resp, deadline); err != nil {
		if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) {
			err = fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
		}
		return Classify(r.Upstream, r.Shape, err, 0, nil)
	}
	// The body is copied: resp goes back to its pool, and the outcome may keep parts of it.
	return Classify(r.Upstream, r.Shape, nil, resp.StatusCode(), bytes.Clone(resp.Body()))
}

// build fills req with r and the app's credentials.
func (c *Client) build(req *fasthttp.Request, app *config.App, r Request) error {
	base := c.MIMCURL
	body := r.Body
	h := &req.Header
	h.DisableNormalizing() // keys as the upstream docs spell them: appId, app_id, access-token
	for k, vs := range r.Header {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	switch r.Upstream {
	case jobs.UpstreamMIMC:
		m := app.MIMC
		if m == nil {
			return fmt.Errorf("app %q has no MIMC credentials", app.Name)
		}
		if r.Auth == AuthBody {
			body = c.withMIMCCredentials(m, body)
		} else {
			h.Set("appId", m.AppID)
			h.Set("appKey", m.AppKey.Reveal())
			h.Set("appSecret", m.AppSecret.Reveal())
		}
	case jobs.UpstreamNotify:
		n := app.Notify
		if n == nil || c.NotifyURL == "" {
			return fmt.Errorf("app %q has no notify credentials", app.Name)
		}
		base = c.NotifyURL
		h.Set("access-token", n.AccessToken.Reveal())
		h.Set("app_id", n.AppID)
		if n.GroupID != "" {
			h.Set("group_id", n.GroupID)
		}
		if n.UserID != "" {
			h.Set("user_id", n.UserID)
		}
	default:
		return fmt.Errorf("unknown upstream %q", r.Upstream)
	}
	u := base + r.Path
	if len(r.Query) > 0 {
		u += "?" + r.Query.Encode()
	}
	req.SetRequestURI(u)
	h.SetMethod(r.Method)
	h.SetContentType("application/json")
	if body != nil {
		req.SetBodyRaw(body)
	}
	return nil
}

// withMIMCCredentials prepends appId (a JSON number), appKey and appSecret to a JSON object.
func (c *Client) withMIMCCredentials(m *config.MIMCCreds, body []byte) []byte {
	head := c.mimcHead(m)
	out := make([]byte, 0, len(head)+len(body)+1)
	out = append(out, head...)
	if len(body) > 2 {
		out = append(out, ',')
		out = append(out, body[1:]...)
	} else {
		out = append(out, '}')
	}
	return out
}

// mimcHead is `{"appId":…,"appKey":"…","appSecret":"…"` for m, encoded once per app.
func (c *Client) mimcHead(m *config.MIMCCreds) []byte {
	if h, ok := c.heads.Load(m); ok {
		return h.([]byte)
	}
	key, secret := m.AppKey.Reveal(), m.AppSecret.Reveal()
	h := make([]byte, 0, len(m.AppID)+len(key)+len(secret)+48)
	h = append(h, `{"appId":`...)
	h = append(h, m.AppID...)
	h = append(h, `,"appKey":`...)
	h = appendJSONString(h, key)
	h = append(h, `,"appSecret":`...)
	h = appendJSONString(h, secret)
	c.heads.Store(m, h)
	return h
}

func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(dst, b...)
}
