// Package api serves pushworker's request/reply API (contract §9): the NATS micro service
// "pushworker" with one endpoint per MIMC topic-management call, the notify certificate
// call and the notify task-detail call. Each request names an app; the call goes to the
// upstream with that app's credentials, through the same breaker gate and HTTP timeout as
// pushes, and its answer comes back as {"ok": true, "data": ...} or
// {"ok": false, "error": {"kind": K, "detail": ...}} with the micro error headers set.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/control"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream"
)

// ServiceName is the name of the micro service (nats micro ls|info|stats pushworker).
const ServiceName = "pushworker"

// Caller makes one upstream call with an app's credentials. *upstream.Client is one.
type Caller interface {
	Do(ctx context.Context, app *config.App, r upstream.Request) upstream.Outcome
	// Host returns the host an upstream's calls go to (the breaker key); "" when the
	// upstream is not configured.
	Host(upstream string) string
}

// Options wire the API service.
type Options struct {
	Config   config.Config // apps, subject prefix, HTTP timeout
	Client   Caller
	Breakers *upstream.Breakers
	Logger   zerolog.Logger
	// Version is the worker's version; a value that is not SemVer (e.g. "dev") is
	// announced as 0.0.0-<value> and kept in the service metadata.
	Version string
	// Controls, when set, adds the operator's endpoints pause, resume and cancel
	// (README "Campaigns").
	Controls *control.Store
	// StopGrace bounds how long Stop waits for requests in flight before cancelling
	// their upstream calls (default Config.HTTPTimeout, or 10s).
	StopGrace time.Duration
}

// Error codes of the micro error header Nats-Service-Error-Code.
const (
	CodeInvalid     = "400" // invalid_job: a request field is missing or wrong
	CodeUnknownApp  = "404" // unknown_app: no such app, or it has no credentials for the upstream
	CodeTooLarge    = "413" // too_large: the reply would exceed the NATS max payload
	CodeRejected    = "422" // upstream_rejected: the upstream refused the request itself
	CodeInternal    = "500" // internal: a bug in the worker (a recovered panic)
	CodeBadGateway  = "502" // upstream_unavailable: network error, timeout, 5xx, malformed answer
	CodeUnavailable = "503" // upstream_unavailable: breaker open, app paused, rate limited, stopping
)

// KindInternal is the error kind of a request that hit a bug in the worker.
const KindInternal jobs.ErrorKind = "internal"

// Start adds the micro service "pushworker" to nc, with one endpoint per call of
// contract §9 under <prefix>.api, in the queue group "pushworker" so that every replica
// serves. Stop on the returned service stops taking requests and waits (bounded) for those
// in flight.
func Start(nc *nats.Conn, o Options) (micro.Service, error) {
	if nc == nil || o.Client == nil || o.Breakers == nil {
		return nil, errors.New("api: a NATS connection, an upstream client and breakers are required")
	}
	grace := o.StopGrace
	if grace <= 0 {
		grace = o.Config.HTTPTimeout
	}
	if grace <= 0 {
		grace = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &apiService{
		nc:       nc,
		cfg:      o.Config,
		client:   o.Client,
		breakers: o.Breakers,
		log:      o.Logger.With().Str("component", "api").Logger(),
		scrub:    newScrubber(o.Config.Secrets()),
		ctx:      ctx,
		cancel:   cancel,
		grace:    grace,
		idle:     make(chan struct{}),
	}
	version, meta := semver(o.Version)
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     version,
		Description: "pushworker request/reply API: MIMC topic management, notify certificates and task stats",
		Metadata:    meta,
		QueueGroup:  ServiceName,
		ErrorHandler: func(_ micro.Service, e *micro.NATSError) {
			s.log.Error().Str("subject", e.Subject).Str("error", s.scrub.text(e.Description)).Msg("API subscription error")
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("api: adding the micro service: %w", err)
	}
	g := svc.AddGroup(broker.NamesFrom(o.Config).APISubject())
	for i := range calls {
		c := &calls[i]
		h := micro.HandlerFunc(func(req micro.Request) { s.handle(c, req) })
		md := map[string]string{"upstream": c.upstream, "call": c.method + " " + c.path, "fields": strings.Join(c.fields, ",")}
		if err := g.AddEndpoint(c.name, h, micro.WithEndpointSubject(c.subject), micro.WithEndpointMetadata(md)); err != nil {
			_ = svc.Stop()
			cancel()
			return nil, fmt.Errorf("api: adding endpoint %s: %w", c.subject, err)
		}
	}
	if o.Controls != nil {
		if err := s.addControlEndpoints(g, *o.Controls); err != nil {
			_ = svc.Stop()
			cancel()
			return nil, err
		}
	}
	// The endpoints' subscriptions are only buffered so far: flush them, so that a request
	// sent on another connection once Start has returned is served (the readiness check and
	// pushctl rely on it) instead of meeting "no responders".
	if err := nc.Flush(); err != nil {
		_ = svc.Stop()
		cancel()
		return nil, fmt.Errorf("api: registering the endpoints with NATS: %w", err)
	}
	s.Service = svc
	return s, nil
}

// apiService is the running service: the micro.Service plus the state its handlers share.
type apiService struct {
	micro.Service

	nc       *nats.Conn
	cfg      config.Config
	client   Caller
	breakers *upstream.Breakers
	log      zerolog.Logger
	scrub    *scrubber

	ctx    context.Context // cancelled when Stop's grace runs out
	cancel context.CancelFunc
	grace  time.Duration

	mu       sync.Mutex
	stopping bool
	inflight int
	idle     chan struct{} // closed when stopping and nothing is in flight
}

// Stop stops taking requests, waits up to the grace period for those in flight, then
// cancels their upstream calls and waits for their replies.
func (s *apiService) Stop() error {
	err := s.Service.Stop()
	s.mu.Lock()
	if !s.stopping {
		s.stopping = true
		if s.inflight == 0 {
			close(s.idle)
		}
	}
	s.mu.Unlock()
	t := time.NewTimer(s.grace)
	defer t.Stop()
	select {
	case <-s.idle:
	case <-t.C:
		s.log.Warn().Dur("grace", s.grace).Msg("API requests still in flight at stop; cancelling their upstream calls")
		s.cancel()
		<-s.idle
	}
	s.cancel()
	return err
}

// enter registers a request in flight; false once Stop was called.
func (s *apiService) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.inflight++
	return true
}

func (s *apiService) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	if s.stopping && s.inflight == 0 {
		close(s.idle)
	}
}

// answer is what one request comes to: upstream data, or an error with its micro code.
type answer struct {
	data json.RawMessage
	err  *jobs.Error
	code string
}

func fail(code string, kind jobs.ErrorKind, format string, a ...any) answer {
	return answer{err: jobs.Errorf(kind, fmt.Sprintf(format, a...)), code: code}
}

// reply is the JSON body of every answer.
type reply struct {
	OK    bool            `json:"ok"`
	Data  json.RawMessage `json:"data,omitempty"`
	Error *jobs.Error     `json:"error,omitempty"`
}

// handle serves one request: decode → app → build → breaker → call → reply.
func (s *apiService) handle(c *call, req micro.Request) {
	start := time.Now()
	if !s.enter() {
		s.respond(req, c, "", start, fail(CodeUnavailable, jobs.KindUpstreamUnavailable, "pushworker is stopping; retry on another replica"))
		return
	}
	defer s.leave()
	appName := ""
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Str("endpoint", c.subject).Str("app", appName).Str("panic", s.scrub.text(fmt.Sprint(r))).Msg("API handler panicked")
			s.respond(req, c, appName, start, fail(CodeInternal, KindInternal, "internal error serving %s", c.subject))
		}
	}()
	s.respond(req, c, appName, start, s.serve(c, req.Data(), &appName))
}

func (s *apiService) serve(c *call, data []byte, appName *string) answer {
	p, jerr := parseParams(data, c.fields)
	if jerr != nil {
		return answer{err: jerr, code: CodeInvalid}
	}
	*appName = p.app
	app, ok := s.cfg.Apps[p.app]
	if !ok {
		return fail(CodeUnknownApp, jobs.KindUnknownApp, "app %q is not configured", p.app)
	}
	if a := s.credentialsMissing(&app, c.upstream); a != nil {
		return *a
	}
	r := c.newRequest()
	if jerr := c.build(&r, p); jerr != nil {
		return answer{err: jerr, code: CodeInvalid}
	}
	if c.pages && p.flag["all"] {
		return s.walkMembers(s.ctx, &app, r, p)
	}
	return s.call(s.ctx, &app, r)
}

func (s *apiService) credentialsMissing(app *config.App, up string) *answer {
	var a answer
	switch {
	case up == jobs.UpstreamMIMC && app.MIMC == nil:
		a = fail(CodeUnknownApp, jobs.KindUnknownApp, "app %q has no MIMC credentials", app.Name)
	case up == jobs.UpstreamNotify && !app.Notify.Complete():
		a = fail(CodeUnknownApp, jobs.KindUnknownApp, "app %q has no notify credentials (PUSH_NOTIFY_APP_ID and PUSH_NOTIFY_ACCESS_TOKEN, or PUSH_APPS_FILE)", app.Name)
	case up == jobs.UpstreamNotify && s.client.Host(jobs.UpstreamNotify) == "":
		a = fail(CodeUnknownApp, jobs.KindUnknownApp, "no notify API URL is configured (PUSH_NOTIFY_URL)")
	default:
		return nil
	}
	return &a
}

// call makes one upstream call through the app's breaker gate.
func (s *apiService) call(ctx context.Context, app *config.App, r upstream.Request) answer {
	host := s.client.Host(r.Upstream)
	gate := s.breakers.For(app.Name, r.Upstream, host)
	done, wait, err := gate.Allow()
	if err != nil {
		if errors.Is(err, upstream.ErrPaused) {
			detail := ""
			if st := gate.State(); st.Detail != "" {
				detail = ": " + st.Detail
			}
			return fail(CodeUnavailable, jobs.KindUpstreamUnavailable, "app %q is paused for %s: the upstream refused its configuration%s; next probe in %s",
				app.Name, r.Upstream, detail, wait.Round(time.Second))
		}
		return fail(CodeUnavailable, jobs.KindUpstreamUnavailable, "circuit breaker open for app %q on %s (%s); retry in %s",
			app.Name, r.Upstream, host, wait.Round(time.Second))
	}
	o := s.client.Do(ctx, app, r)
	done(o)
	return fromOutcome(o)
}

// fromOutcome maps a classified upstream outcome to an answer.
func fromOutcome(o upstream.Outcome) answer {
	if o.Accepted() {
		data := o.Data
		if len(data) == 0 {
			data = json.RawMessage("null")
		}
		return answer{data: data}
	}
	e := o.Err
	if e == nil {
		e = jobs.Errorf(jobs.KindUpstreamUnavailable, "upstream call failed ("+o.Kind.String()+")")
	}
	code := CodeBadGateway
	switch {
	case e.Kind == jobs.KindUnknownApp:
		code = CodeUnknownApp
	case e.Kind == jobs.KindUpstreamRejected:
		code = CodeRejected
	case o.Kind == upstream.Configuration, o.RateLimited:
		code = CodeUnavailable
	}
	return answer{err: e, code: code}
}

// respond sends the answer, scrubbed of every configured secret, and logs it.
func (s *apiService) respond(req micro.Request, c *call, app string, start time.Time, a answer) {
	body := reply{OK: a.err == nil, Data: a.data, Error: a.err}
	if a.err == nil && len(body.Data) == 0 {
		body.Data = json.RawMessage("null")
	}
	b, err := json.Marshal(body)
	if err != nil { // upstream data that is not valid JSON cannot reach here (Classify parsed it)
		a = fail(CodeBadGateway, jobs.KindUpstreamUnavailable, "upstream data could not be encoded: %v", err)
		body = reply{Error: a.err}
		b, _ = json.Marshal(body)
	}
	b = s.scrub.json(b)
	if limit := s.nc.MaxPayload(); limit > 0 && int64(len(b)) > limit-1024 {
		a = fail(CodeTooLarge, jobs.KindTooLarge, "the reply of %d bytes exceeds the NATS max payload of %d bytes; ask for less", len(b), limit)
		body = reply{Error: a.err}
		b, _ = json.Marshal(body)
	}
	ev := s.log.Debug()
	if a.err != nil {
		ev = s.log.Info()
		if strings.HasPrefix(a.code, "5") {
			ev = s.log.Warn()
		}
		ev = ev.Str("code", a.code).Str("kind", string(a.err.Kind)).Str("detail", s.scrub.text(a.err.Detail))
	}
	ev.Str("endpoint", c.subject).Str("app", app).Dur("took", time.Since(start)).Msg("API request served")
	if a.err != nil {
		err = req.Error(a.code, headerValue(s.scrub.text(a.err.Detail)), b)
	} else {
		err = req.Respond(b)
	}
	if err != nil {
		s.log.Warn().Err(err).Str("endpoint", c.subject).Str("app", app).Msg("API reply could not be sent")
	}
}

// headerValue makes a detail fit a NATS header value: one line, bounded.
func headerValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 512 {
		s = s[:512]
	}
	if s == "" {
		s = "error"
	}
	return s
}

var semverRe = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// semver returns a SemVer version for the micro service (which requires one) and, when
// v is not one, metadata keeping v as given.
func semver(v string) (string, map[string]string) {
	if semverRe.MatchString(v) {
		return v, nil
	}
	if t := strings.TrimPrefix(v, "v"); semverRe.MatchString(t) {
		return t, map[string]string{"version": v}
	}
	if v == "" {
		return "0.0.0", nil
	}
	pre := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' {
			return r
		}
		return '-'
	}, v)
	if out := "0.0.0-" + pre; semverRe.MatchString(out) {
		return out, map[string]string{"version": v}
	}
	return "0.0.0", map[string]string{"version": v}
}
