package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
)

// maxAnswerBytes bounds how much of an upstream answer is read.
const maxAnswerBytes = 4 << 20

// NewHTTPClient returns the tuned client every upstream call goes through: keep-alive
// connections sized to the worker's concurrency, and a timeout per call.
func NewHTTPClient(timeout time.Duration, conns int) *http.Client {
	if conns < 16 {
		conns = 16
	}
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          conns * 2,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
		// The answers are a few hundred bytes of JSON: gzip would cost more than it saves.
		DisableCompression: true,
	}
	return &http.Client{Timeout: timeout, Transport: t}
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
	HTTP      *http.Client
	MIMCURL   string
	NotifyURL string
	// Scrub, when set, removes configured secrets from every outcome's detail and message:
	// an upstream that echoes a credential back must not put it into a result, a DLQ
	// entry, a log line or /readyz.
	Scrub *config.Scrubber

	hostsOnce            sync.Once
	mimcHost, notifyHost string
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
	req, err := c.build(ctx, app, r)
	if err != nil {
		return Outcome{Kind: Permanent, Err: jobs.Errorf(jobs.KindUnknownApp, err.Error())}
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Classify(r.Upstream, r.Shape, scrubURLError(err), 0, nil)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return Classify(r.Upstream, r.Shape, fmt.Errorf("reading the answer: %w", err), 0, nil)
	}
	return Classify(r.Upstream, r.Shape, nil, resp.StatusCode, body)
}

func (c *Client) build(ctx context.Context, app *config.App, r Request) (*http.Request, error) {
	base := c.MIMCURL
	body := r.Body
	h := http.Header{}
	for k, v := range r.Header {
		h[k] = v
	}
	switch r.Upstream {
	case jobs.UpstreamMIMC:
		m := app.MIMC
		if m == nil {
			return nil, fmt.Errorf("app %q has no MIMC credentials", app.Name)
		}
		if r.Auth == AuthBody {
			body = withMIMCCredentials(m, body)
		} else {
			h["appId"] = []string{m.AppID}
			h["appKey"] = []string{m.AppKey.Reveal()}
			h["appSecret"] = []string{m.AppSecret.Reveal()}
		}
	case jobs.UpstreamNotify:
		n := app.Notify
		if n == nil || c.NotifyURL == "" {
			return nil, fmt.Errorf("app %q has no notify credentials", app.Name)
		}
		base = c.NotifyURL
		h["access-token"] = []string{n.AccessToken.Reveal()}
		h["app_id"] = []string{n.AppID}
		if n.GroupID != "" {
			h["group_id"] = []string{n.GroupID}
		}
		if n.UserID != "" {
			h["user_id"] = []string{n.UserID}
		}
	default:
		return nil, fmt.Errorf("unknown upstream %q", r.Upstream)
	}
	u := base + r.Path
	if len(r.Query) > 0 {
		u += "?" + r.Query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, u, rd)
	if err != nil {
		return nil, err
	}
	h.Set("Content-Type", "application/json")
	// Header keys are sent as given: the upstream docs spell them appId, app_id, access-token.
	for k, v := range h {
		req.Header[k] = v
	}
	return req, nil
}

// withMIMCCredentials prepends appId (a JSON number), appKey and appSecret to a JSON object.
func withMIMCCredentials(m *config.MIMCCreds, body []byte) []byte {
	key, secret := m.AppKey.Reveal(), m.AppSecret.Reveal()
	out := make([]byte, 0, len(body)+len(m.AppID)+len(key)+len(secret)+48)
	out = append(out, `{"appId":`...)
	out = append(out, m.AppID...)
	out = append(out, `,"appKey":`...)
	out = appendJSONString(out, key)
	out = append(out, `,"appSecret":`...)
	out = appendJSONString(out, secret)
	if len(body) > 2 {
		out = append(out, ',')
		out = append(out, body[1:]...)
	} else {
		out = append(out, '}')
	}
	return out
}

func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(dst, b...)
}

// scrubURLError drops the request URL from a transport error (it is noise, and a query
// string could one day carry something private).
func scrubURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
