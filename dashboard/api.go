package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/dlq"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream"
)

//go:embed assets
var assets embed.FS

const (
	// recentLimit is how many recent results the state carries.
	recentLimit = 100
	// notifyLimit is how many notify tasks the state carries.
	notifyLimit = 50
	// dlqPageMax and dlqScanMax bound a DLQ page and the messages read to fill it.
	dlqPageMax = 100
	dlqScanMax = 5000
	// replayMax bounds the entries of one replay request.
	replayMax = 500
	// apiTimeout bounds the NATS work of one request.
	apiTimeout = 10 * time.Second
)

// Handler serves the page under /ui/ and its JSON API under /ui/api/.
func (d *Dashboard) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	mux.Handle("GET /ui/{file}", http.StripPrefix("/ui/", files))
	mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := assets.ReadFile("assets/index.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /ui/api/state", d.api(d.state))
	mux.HandleFunc("GET /ui/api/lookup", d.api(d.lookup))
	mux.HandleFunc("GET /ui/api/dlq", d.api(d.dlqPage))
	mux.HandleFunc("GET /ui/api/dlq/{seq}", d.api(d.dlqShow))
	mux.HandleFunc("POST /ui/api/dlq/replay", d.api(d.write(d.dlqReplay)))
	mux.HandleFunc("POST /ui/api/login", d.api(d.login))
	mux.HandleFunc("POST /ui/api/logout", d.api(d.logout))
	return secured(mux)
}

// secured sets the headers every answer of the dashboard carries: scripts and styles only
// from the page's own origin, no framing, no sniffing.
func secured(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// apiError is an error answer of the JSON API.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(msg string) error { return &apiError{http.StatusBadRequest, msg} }

// handler is an API endpoint: it returns a value to write as JSON, or an error.
type handler func(w http.ResponseWriter, r *http.Request) (any, error)

// api adapts a handler that returns a value to write as JSON, or an error.
func (d *Dashboard) api(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d.touch()
		v, err := h(w, r)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			status := http.StatusInternalServerError
			var ae *apiError
			switch {
			case errors.As(err, &ae):
				status = ae.status
			case errors.Is(err, context.DeadlineExceeded):
				status = http.StatusGatewayTimeout
			}
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(v)
	}
}

// write lets h run only for requests allowed to change state.
func (d *Dashboard) write(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		if status, msg := d.auth.allowWrite(r, time.Now()); status != 0 {
			d.log.Warn().Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Int("status", status).Msg("dashboard write refused")
			return nil, &apiError{status, msg}
		}
		return h(w, r)
	}
}

// gateView is one upstream gate.
type gateView struct {
	App           string               `json:"app"`
	Upstream      string               `json:"upstream"`
	Host          string               `json:"host"`
	State         string               `json:"state"` // closed, open, paused, held (by another replica)
	Since         time.Time            `json:"since,omitzero"`
	Detail        string               `json:"detail,omitempty"`
	LastFailure   string               `json:"last_failure,omitempty"`
	LastFailureAt time.Time            `json:"last_failure_at,omitzero"`
	LastAnswer    *jobs.UpstreamAnswer `json:"last_answer,omitempty"`
	HeldUntil     time.Time            `json:"held_until,omitzero"`
}

func gateViews(states []upstream.GateState) []gateView {
	out := make([]gateView, 0, len(states))
	for _, g := range states {
		v := gateView{App: g.App, Upstream: g.Upstream, Host: g.Host, State: "closed", Since: g.Since,
			LastFailure: g.LastFailure, LastFailureAt: g.LastFailureAt, LastAnswer: g.LastAnswer, HeldUntil: g.RemoteUntil}
		switch {
		case g.Paused:
			v.State, v.Detail = "paused", g.Detail
		case g.Open:
			v.State = "open"
		case !g.RemoteUntil.IsZero():
			v.State = "held"
		}
		out = append(out, v)
	}
	return out
}

// stateView is everything the page shows but the DLQ list and lookups.
type stateView struct {
	Replica  string        `json:"replica"`
	Version  string        `json:"version"`
	Sandbox  bool          `json:"sandbox"`
	Now      time.Time     `json:"now"`
	Auth     authView      `json:"auth"`
	Backlog  backlogView   `json:"backlog"`
	Budgets  []budgetRow   `json:"budgets"`
	Replicas []replicaRow  `json:"replicas"`
	Gates    []gateView    `json:"gates"`
	Results  resultsView   `json:"results"`
	Notify   []notifyTask  `json:"notify"`
	DLQ      streamSummary `json:"dlq"`
}

type authView struct {
	TokenSet bool `json:"token_set"` // writes are possible on this replica
	Admin    bool `json:"admin"`     // this request may write
}

func (d *Dashboard) state(_ http.ResponseWriter, r *http.Request) (any, error) {
	now := time.Now()
	q := r.URL.Query()
	f := resultFilter{status: q.Get("status"), typ: q.Get("type"), app: q.Get("app")}
	types := make([]string, 0, 8)
	for _, s := range jobs.Specs() {
		types = append(types, string(s.Type))
	}
	budgets, replicas := d.peers.view(d.c, d.replica, now)
	d.mu.Lock()
	dlqInfo := d.dlqInfo
	d.mu.Unlock()
	return stateView{
		Replica: d.replica, Version: d.version, Sandbox: d.c.Sandbox, Now: now,
		Auth:    authView{TokenSet: d.auth.enabled, Admin: d.auth.admin(r, now)},
		Backlog: d.backlog.view(types), Budgets: budgets, Replicas: replicas,
		Gates:   gateViews(d.breakers.States()),
		Results: d.results.view(now, f, recentLimit, d.dropped()),
		Notify:  d.notify.view(notifyLimit), DLQ: dlqInfo,
	}, nil
}

// dlqRow is a DLQ entry in a list.
type dlqRow struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Type      string    `json:"type"`
	RequestID string    `json:"request_id"`
	App       string    `json:"app"`
	Status    string    `json:"status"`
	Kind      string    `json:"kind"`
	Detail    string    `json:"detail"`
	Attempts  int       `json:"attempts"`
	Broken    string    `json:"broken,omitempty"` // not a DLQ entry: why
}

func rowOf(e *dlq.Entry) dlqRow {
	row := dlqRow{Seq: e.Seq, Time: e.Time, Type: e.Type()}
	if e.Err != nil {
		row.Broken = e.Err.Error()
		return row
	}
	res := &e.Entry.Result
	row.RequestID, row.App, row.Status, row.Attempts = res.RequestID, res.App, string(res.Status), res.Attempts
	if res.Error != nil {
		row.Kind, row.Detail = string(res.Error.Kind), res.Error.Detail
	}
	return row
}

func (d *Dashboard) dlqPage(_ http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	f := dlq.Filter{Type: q.Get("type"), Kind: q.Get("kind"), RequestID: q.Get("request_id")}
	if f.Type != "" && !token(f.Type) {
		return nil, badRequest("type must be a job type")
	}
	before, err := optUint(q.Get("before"))
	if err != nil {
		return nil, badRequest("before must be a stream sequence")
	}
	limit := 50
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 {
			return nil, badRequest("limit must be a positive number")
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	st, err := d.js.Stream(ctx, d.n.DLQStream())
	if err != nil {
		return nil, err
	}
	p, err := dlq.Newest(ctx, st, d.n, f, before, min(limit, dlqPageMax), dlqScanMax)
	if err != nil {
		return nil, err
	}
	rows := make([]dlqRow, len(p.Entries))
	for i := range p.Entries {
		rows[i] = rowOf(&p.Entries[i])
	}
	info := st.CachedInfo().State
	return map[string]any{"entries": rows, "more": p.More, "scanned": p.Scanned,
		"stream": streamSummary{Messages: info.Msgs, FirstSeq: info.FirstSeq, LastSeq: info.LastSeq}}, nil
}

func (d *Dashboard) dlqShow(_ http.ResponseWriter, r *http.Request) (any, error) {
	seq, err := optUint(r.PathValue("seq"))
	if err != nil || seq == 0 {
		return nil, badRequest("not a stream sequence")
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	st, err := d.js.Stream(ctx, d.n.DLQStream())
	if err != nil {
		return nil, err
	}
	raw, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, &apiError{http.StatusNotFound, "no DLQ entry " + strconv.FormatUint(seq, 10) + " (replayed, or expired)"}
	}
	if err != nil {
		return nil, err
	}
	e := dlq.Decode(raw.Sequence, raw.Time, raw.Subject, raw.Data)
	if e.Err != nil {
		return map[string]any{"seq": seq, "broken": e.Err.Error()}, nil
	}
	return dlq.Show(&e), nil
}

// replayRequest is the body of POST /ui/api/dlq/replay.
type replayRequest struct {
	Seqs []uint64 `json:"seqs"`
}

// replayed is the outcome of one entry of a replay.
type replayed struct {
	Seq       uint64 `json:"seq"`
	OK        bool   `json:"ok"`
	Subject   string `json:"subject,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	JobSeq    uint64 `json:"job_seq,omitempty"` // its sequence in the jobs stream
	Error     string `json:"error,omitempty"`
}

func (d *Dashboard) dlqReplay(_ http.ResponseWriter, r *http.Request) (any, error) {
	var req replayRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		return nil, badRequest(`body must be {"seqs": [<DLQ stream sequence>, ...]}`)
	}
	if len(req.Seqs) == 0 || len(req.Seqs) > replayMax {
		return nil, badRequest("seqs must list 1 to " + strconv.Itoa(replayMax) + " DLQ entries")
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout+time.Duration(len(req.Seqs))*100*time.Millisecond)
	defer cancel()
	st, err := d.js.Stream(ctx, d.n.DLQStream())
	if err != nil {
		return nil, err
	}
	out := make([]replayed, 0, len(req.Seqs))
	ok := 0
	for _, seq := range req.Seqs {
		res := replayed{Seq: seq}
		raw, err := st.GetMsg(ctx, seq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			res.Error = "no DLQ entry " + strconv.FormatUint(seq, 10) + " (replayed already, or expired)"
		case err != nil:
			res.Error = err.Error()
		default:
			e := dlq.Decode(raw.Sequence, raw.Time, raw.Subject, raw.Data)
			p, ack, err := dlq.Replay(ctx, d.js, st, d.n, &e)
			res.Subject, res.RequestID = p.Subject, p.RequestID
			if ack != nil {
				res.JobSeq = ack.Sequence
			}
			res.OK = ack != nil
			if err != nil {
				res.Error = err.Error()
			}
		}
		if res.OK {
			ok++
		}
		out = append(out, res)
	}
	d.log.Info().Str("remote", r.RemoteAddr).Int("asked", len(req.Seqs)).Int("replayed", ok).Msg("DLQ entries replayed from the dashboard")
	return map[string]any{"replayed": ok, "failed": len(req.Seqs) - ok, "entries": out}, nil
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) (any, error) {
	if !d.auth.enabled {
		return nil, &apiError{http.StatusForbidden, "read-only: PUSH_UI_ADMIN_TOKEN is not set on this replica"}
	}
	if !sameOrigin(r) {
		return nil, &apiError{http.StatusForbidden, "cross-site request refused"}
	}
	var req struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		return nil, badRequest(`body must be {"token": "..."}`)
	}
	if !d.auth.tokenOK(req.Token) {
		if !d.auth.fails.Allow() {
			return nil, &apiError{http.StatusTooManyRequests, "too many failed logins; wait a little"}
		}
		d.log.Warn().Str("remote", r.RemoteAddr).Msg("dashboard login with a wrong token")
		return nil, &apiError{http.StatusUnauthorized, "wrong admin token"}
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: d.auth.session(time.Now()), Path: "/ui/", MaxAge: int(sessionFor / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	d.log.Info().Str("remote", r.RemoteAddr).Msg("dashboard login")
	return map[string]bool{"admin": true}, nil
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) (any, error) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	return map[string]bool{"admin": false}, nil
}

func optUint(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// token reports whether s is a valid single subject token.
func token(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n")
}

// decodeResult decodes a stored result.
func decodeResult(data []byte, r *jobs.Result) error { return json.Unmarshal(data, r) }
