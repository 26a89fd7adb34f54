package sandbox

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault injection.

// FailRule is a pending FailNext: the next N requests whose path starts with Path ("" is
// every path) are answered with Status and Body.
type FailRule struct {
	Path   string `json:"path"`
	N      int    `json:"n"`
	Status int    `json:"status"`
	Body   string `json:"body"`
}

// Faults is the fault injection in force.
type Faults struct {
	Latency  time.Duration `json:"-"`         // every request waits this long (JSON: latency_ms)
	Outage   bool          `json:"outage"`    // every request answers HTTP 503
	FailNext []FailRule    `json:"fail_next"` // pending FailNext rules, in the order they apply
}

// MarshalJSON writes the latency as latency_ms, the form POST /_sandbox/fault takes.
func (f Faults) MarshalJSON() ([]byte, error) {
	type plain Faults
	rules := f.FailNext
	if rules == nil {
		rules = []FailRule{}
	}
	return json.Marshal(struct {
		LatencyMS float64 `json:"latency_ms"`
		plain
	}{float64(f.Latency) / float64(time.Millisecond), plain{Outage: f.Outage, FailNext: rules}})
}

// SetLatency makes every upstream request wait d before it is answered (0 turns it off).
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(max(d, 0))) }

// SetOutage makes every upstream request answer HTTP 503 while on is true.
func (s *Server) SetOutage(on bool) { s.outage.Store(on) }

// FailNext makes the next n requests whose path starts with path ("" is any path) answer
// HTTP status (0 means 500) with body (empty means {"code":status,"message":"injected
// failure","data":null}). Rules queue up in the order given; n <= 0 drops the pending
// rules of exactly this path.
func (s *Server) FailNext(path string, n int, status int, body string) {
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if body == "" {
		body = `{"code":` + strconv.Itoa(status) + `,"message":"injected failure","data":null}`
	}
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if n <= 0 {
		kept := s.failRules[:0]
		for _, r := range s.failRules {
			if r.Path == path {
				s.failPending.Add(-int64(r.N))
			} else {
				kept = append(kept, r)
			}
		}
		s.failRules = kept
		return
	}
	s.failRules = append(s.failRules, FailRule{Path: path, N: n, Status: status, Body: body})
	s.failPending.Add(int64(n))
}

// Faults returns the fault injection in force.
func (s *Server) Faults() Faults {
	s.failMu.Lock()
	rules := append([]FailRule(nil), s.failRules...)
	s.failMu.Unlock()
	return Faults{Latency: time.Duration(s.latency.Load()), Outage: s.outage.Load(), FailNext: rules}
}

// applyFaults waits the latency and answers an outage or a FailNext rule. It reports
// whether the request is still to be answered.
func (s *Server) applyFaults(w http.ResponseWriter, r *http.Request) bool {
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return false
		case <-s.closed:
			t.Stop()
			writeError(w, http.StatusServiceUnavailable, http.StatusServiceUnavailable, "sandbox is shutting down")
			return false
		}
	}
	if s.outage.Load() {
		s.injected.Add(1)
		writeError(w, http.StatusServiceUnavailable, http.StatusServiceUnavailable, "service unavailable (sandbox outage)")
		return false
	}
	if s.failPending.Load() <= 0 {
		return true
	}
	s.failMu.Lock()
	var hit *FailRule
	for i := range s.failRules {
		if strings.HasPrefix(r.URL.Path, s.failRules[i].Path) {
			rule := s.failRules[i]
			hit = &rule
			s.failPending.Add(-1)
			if s.failRules[i].N--; s.failRules[i].N == 0 {
				s.failRules = append(s.failRules[:i], s.failRules[i+1:]...)
			}
			break
		}
	}
	s.failMu.Unlock()
	if hit == nil {
		return true
	}
	s.injected.Add(1)
	writeRaw(w, hit.Status, []byte(hit.Body))
	return false
}

// Recording.

// Request is one request the sandbox received.
type Request struct {
	Method string
	Path   string
	Query  string      // raw query, without "?"
	Header http.Header // as received, credentials included
	Body   []byte
	At     time.Time // when it arrived
}

// MarshalJSON writes the request with its body as a string, for GET /_sandbox/requests.
func (q Request) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Method string      `json:"method"`
		Path   string      `json:"path"`
		Query  string      `json:"query,omitempty"`
		Header http.Header `json:"header"`
		Body   string      `json:"body"`
		At     time.Time   `json:"at"`
	}{q.Method, q.Path, q.Query, q.Header, string(q.Body), q.At})
}

// recorder keeps the last requests in a ring.
type recorder struct {
	mu   sync.Mutex
	buf  []Request
	size int
	next int // where the next request goes once buf is full
}

func newRecorder(size int) *recorder {
	return &recorder{size: size, buf: make([]Request, 0, min(size, 1024))}
}

func (rc *recorder) add(r *http.Request, body []byte) {
	q := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body, At: time.Now()}
	rc.mu.Lock()
	if len(rc.buf) < rc.size {
		rc.buf = append(rc.buf, q)
	} else {
		rc.buf[rc.next] = q
		rc.next = (rc.next + 1) % rc.size
	}
	rc.mu.Unlock()
}

// list returns the recorded requests, oldest first.
func (rc *recorder) list() []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make([]Request, 0, len(rc.buf))
	out = append(out, rc.buf[rc.next:]...)
	return append(out, rc.buf[:rc.next]...)
}

func (rc *recorder) reset() {
	rc.mu.Lock()
	rc.buf, rc.next = rc.buf[:0], 0
	rc.mu.Unlock()
}

// Requests returns a copy of the recorded requests (the last Config.RecordRequests), oldest
// first, control requests under /_sandbox/ excluded.
func (s *Server) Requests() []Request {
	if s.rec == nil {
		return nil
	}
	out := s.rec.list()
	for i := range out {
		out[i].Header = out[i].Header.Clone()
		out[i].Body = append([]byte(nil), out[i].Body...)
	}
	return out
}

// Statistics.

// ClassStats is the traffic of one rate class.
type ClassStats struct {
	Rate        float64 `json:"rate"`         // configured tokens per second, 0 = unlimited
	Calls       int64   `json:"calls"`        // accepted calls
	Tokens      int64   `json:"tokens"`       // accepted tokens (call weights)
	RateLimited int64   `json:"rate_limited"` // calls answered HTTP 429
	WorstWindow int64   `json:"worst_window"` // most accepted tokens in any sliding 1 s window
}

// Stats is what the sandbox has seen since it started or was last Reset.
type Stats struct {
	Requests int64                 `json:"requests"` // upstream requests, control requests excluded
	Injected int64                 `json:"injected"` // answered by SetOutage or FailNext
	Classes  map[string]ClassStats `json:"classes"`  // per class, summed over apps (WorstWindow: the worst app)
	// Apps holds the classes per app id.
	Apps  map[string]map[string]ClassStats `json:"apps"`
	Paths map[string]int64                 `json:"paths"` // requests per endpoint path; unknown paths count as "other"
}

// Stats returns the traffic seen since the start or the last Reset.
func (s *Server) Stats() Stats {
	st := Stats{
		Requests: s.requests.Load(),
		Injected: s.injected.Load(),
		Classes:  make(map[string]ClassStats, len(Classes)),
		Apps:     map[string]map[string]ClassStats{},
		Paths:    map[string]int64{},
	}
	for _, c := range Classes {
		st.Classes[c] = ClassStats{Rate: s.cfg.Rates[c]}
	}
	add := func(appID, class string, cs ClassStats) {
		if st.Apps[appID] == nil {
			st.Apps[appID] = map[string]ClassStats{}
		}
		st.Apps[appID][class] = cs
		sum := st.Classes[class]
		sum.Calls += cs.Calls
		sum.Tokens += cs.Tokens
		sum.RateLimited += cs.RateLimited
		sum.WorstWindow = max(sum.WorstWindow, cs.WorstWindow)
		st.Classes[class] = sum
	}
	for id, a := range s.mimcApps {
		for c, w := range a.windows {
			add(id, Classes[c], w.stats())
		}
	}
	for id, a := range s.notifyApps {
		add(id, ClassNotify, a.window.stats())
	}
	for p, r := range s.routes {
		if n := r.count.Load(); n > 0 {
			st.Paths[p] = n
		}
	}
	if n := s.other.Load(); n > 0 {
		st.Paths["other"] = n
	}
	return st
}

// Reset clears the recorded requests, the statistics, the rate limit windows and the
// injected faults. Topics and notify tasks stay.
func (s *Server) Reset() {
	if s.rec != nil {
		s.rec.reset()
	}
	s.requests.Store(0)
	s.injected.Store(0)
	s.other.Store(0)
	for _, r := range s.routes {
		r.count.Store(0)
	}
	for _, a := range s.mimcApps {
		for _, w := range a.windows {
			w.reset()
		}
	}
	for _, a := range s.notifyApps {
		a.window.reset()
	}
	s.SetLatency(0)
	s.SetOutage(false)
	s.failMu.Lock()
	s.failRules = nil
	s.failPending.Store(0)
	s.failMu.Unlock()
}

// HTTP control endpoints, for use from another process.

const controlPrefix = "/_sandbox/"

// serveControl answers the control endpoints under /_sandbox/ (see the package doc).
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, controlPrefix)
	get, post := r.Method == http.MethodGet, r.Method == http.MethodPost
	switch {
	case name == "health" && get:
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	case name == "stats" && get:
		writeJSON(w, http.StatusOK, s.Stats())
	case name == "requests" && get:
		s.controlRequests(w, r)
	case name == "reset" && post:
		s.Reset()
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	case name == "fault" && get:
		writeJSON(w, http.StatusOK, s.Faults())
	case name == "fault" && post:
		s.controlFault(w, r)
	case name == "topic" && post:
		s.controlTopic(w, r)
	case name == "notify" && post:
		var req struct {
			BoolAnswer *bool `json:"bool_answer"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.BoolAnswer == nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body must be {"bool_answer": true|false}`})
			return
		}
		s.SetNotifyBoolAnswer(*req.BoolAnswer)
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown control endpoint " + r.Method + " " + r.URL.Path})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	writeRaw(w, status, b)
}

func (s *Server) controlRequests(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	reqs := s.Requests()
	if p := q.Get("path"); p != "" {
		kept := reqs[:0]
		for _, rq := range reqs {
			if strings.HasPrefix(rq.Path, p) {
				kept = append(kept, rq)
			}
		}
		reqs = kept
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a non-negative integer"})
			return
		}
		if n < len(reqs) {
			reqs = reqs[len(reqs)-n:]
		}
	}
	if reqs == nil {
		reqs = []Request{}
	}
	writeJSON(w, http.StatusOK, reqs)
}

func (s *Server) controlFault(w http.ResponseWriter, r *http.Request) {
	var req struct {
		LatencyMS *float64        `json:"latency_ms"`
		Outage    *bool           `json:"outage"`
		FailNext  json.RawMessage `json:"fail_next"`
	}
	bad := func(msg string) { writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg}) }
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		bad("body must be a JSON object: " + err.Error())
		return
	}
	var rules []FailRule
	if len(req.FailNext) > 0 && string(req.FailNext) != "null" {
		if req.FailNext[0] == '[' {
			if err := json.Unmarshal(req.FailNext, &rules); err != nil {
				bad("fail_next: " + err.Error())
				return
			}
		} else {
			var one FailRule
			if err := json.Unmarshal(req.FailNext, &one); err != nil {
				bad("fail_next: " + err.Error())
				return
			}
			rules = []FailRule{one}
		}
	}
	if req.LatencyMS != nil {
		if *req.LatencyMS < 0 {
			bad("latency_ms must not be negative")
			return
		}
		s.SetLatency(time.Duration(*req.LatencyMS * float64(time.Millisecond)))
	}
	if req.Outage != nil {
		s.SetOutage(*req.Outage)
	}
	for _, rule := range rules {
		s.FailNext(rule.Path, rule.N, rule.Status, rule.Body)
	}
	writeJSON(w, http.StatusOK, s.Faults())
}

func (s *Server) controlTopic(w http.ResponseWriter, r *http.Request) {
	var req struct {
		TopicID json.RawMessage `json:"topicId"`
		Members []string        `json:"members"`
		Online  *int            `json:"online"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be a JSON object: " + err.Error()})
		return
	}
	id, msg := bodyTopicID(req.TopicID)
	if msg != "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
		return
	}
	if _, ok := s.Topic(id); !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "topic " + strconv.FormatInt(id, 10) + " was not created through the topic API"})
		return
	}
	for _, m := range req.Members {
		s.AddMember(id, m)
	}
	if req.Online != nil {
		s.SetOnline(id, *req.Online)
	}
	info, _ := s.Topic(id)
	writeJSON(w, http.StatusOK, map[string]any{"topicId": strconv.FormatInt(id, 10), "members": len(info.Members), "online": info.Online})
}
