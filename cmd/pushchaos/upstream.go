package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pushworker/pushworker/upstream/sandbox"
)

// call is one push request the upstream received.
type call struct {
	Slot      int       // the worker slot (1-based) whose listener it came through
	Path      string    // the endpoint
	At        time.Time // arrival, before any injected latency or fault
	Answered  time.Time // when the answer was written
	Class     string    // rate class
	Weight    int       // tokens
	RequestID string    // the job's request id (msg / message / messages[0] / setting.request_id)
	Status    int       // HTTP status of the answer
	Accepted  bool      // HTTP 200 with body code 200
}

// upstream is the sandbox upstream behind a recorder. Each worker slot talks to it through
// a listener of its own, so that every call is known by the slot that made it (a call
// accepted twice is matched to the kill of the worker that made the first one).
type upstream struct {
	sb    *sandbox.Server
	start time.Time

	mu    sync.Mutex
	calls []call

	stallMu sync.Mutex
	stalls  []stall
	stop    chan struct{}

	srvs []*http.Server
	urls []string // base URL per slot (index slot-1)
	wg   sync.WaitGroup
}

// startUpstream starts the sandbox with rates per class and one listener per slot.
func startUpstream(slots int, rates map[string]float64) (*upstream, error) {
	cfg := sandbox.DefaultConfig()
	cfg.Rates = rates
	cfg.RecordRequests = -1
	u := &upstream{sb: sandbox.New(cfg), start: time.Now(), stop: make(chan struct{})}
	u.wg.Add(1)
	go u.watchStalls()
	for i := 1; i <= slots; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			u.close()
			return nil, err
		}
		slot := i
		srv := &http.Server{
			Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { u.serve(slot, w, r) }),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
		}
		u.srvs = append(u.srvs, srv)
		u.urls = append(u.urls, "http://"+ln.Addr().String())
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			_ = srv.Serve(ln)
		}()
	}
	return u, nil
}

// watchStalls notes every time this process did not run for minStall or more: a goroutine
// that sleeps 2 ms wakes that much late.
func (u *upstream) watchStalls() {
	defer u.wg.Done()
	const tick = 2 * time.Millisecond
	for {
		t := time.Now()
		select {
		case <-u.stop:
			return
		case <-time.After(tick):
		}
		if now := time.Now(); now.Sub(t)-tick >= minStall {
			u.stallMu.Lock()
			u.stalls = append(u.stalls, stall{From: t.Add(tick), To: now})
			u.stallMu.Unlock()
		}
	}
}

func (u *upstream) stallList() []stall {
	u.stallMu.Lock()
	defer u.stallMu.Unlock()
	return append([]stall(nil), u.stalls...)
}

// close stops the listeners and releases requests waiting for injected latency.
func (u *upstream) close() {
	close(u.stop)
	_ = u.sb.Close()
	for _, s := range u.srvs {
		_ = s.Close()
	}
	u.wg.Wait()
}

// serve records a push call and hands the request to the sandbox.
func (u *upstream) serve(slot int, w http.ResponseWriter, r *http.Request) {
	class := classOfPath(r.URL.Path)
	if class == "" || r.Method != http.MethodPost {
		u.sb.ServeHTTP(w, r)
		return
	}
	c := call{Slot: slot, At: time.Now(), Class: class, Path: r.URL.Path}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err == nil {
		c.RequestID, c.Weight = parseCall(class, body)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rw := &recordingWriter{ResponseWriter: w}
	u.sb.ServeHTTP(rw, r)
	c.Answered = time.Now()
	c.Status = rw.status
	c.Accepted = rw.status == http.StatusOK && bytes.HasPrefix(rw.head, []byte(`{"code":200`))
	u.mu.Lock()
	u.calls = append(u.calls, c)
	u.mu.Unlock()
}

// snapshot returns the calls so far.
func (u *upstream) snapshot() []call {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]call(nil), u.calls...)
}

// classOfPath is the rate class of a push path, or "" for any other path (topic API,
// task details, certificates).
func classOfPath(p string) string {
	switch {
	case strings.HasPrefix(p, "/api/push/p2p/"):
		return sandbox.ClassP2P
	case strings.HasPrefix(p, "/api/push/p2t/"):
		return sandbox.ClassP2T
	case strings.HasPrefix(p, "/api/push/ucs/"):
		return sandbox.ClassUCS
	case p == "/push/notify":
		return sandbox.ClassNotify
	}
	return ""
}

// parseCall reads a push body's request id and weight: the soak's MIMC jobs carry their
// request id as the message (msg, message, or the first of messages), notify jobs in
// setting.request_id (the worker sets it from the job's request id).
func parseCall(class string, body []byte) (id string, weight int) {
	var b struct {
		Msg        string            `json:"msg"`
		Message    json.RawMessage   `json:"message"` // a string (MIMC) or an object (notify)
		Messages   []string          `json:"messages"`
		ToAccounts []string          `json:"toAccounts"`
		TopicIDs   []json.RawMessage `json:"topicIds"`
		Setting    struct {
			RequestID string `json:"request_id"`
		} `json:"setting"`
	}
	if json.Unmarshal(body, &b) != nil {
		return "", 1
	}
	weight = max(1, len(b.ToAccounts), len(b.TopicIDs), len(b.Messages))
	switch {
	case class == sandbox.ClassNotify:
		id = b.Setting.RequestID
	case b.Msg != "":
		id = b.Msg
	case len(b.Message) > 0 && b.Message[0] == '"':
		_ = json.Unmarshal(b.Message, &id)
	case len(b.Messages) > 0:
		id = b.Messages[0]
	}
	return id, weight
}

// recordingWriter keeps the status and the first bytes of an answer.
type recordingWriter struct {
	http.ResponseWriter
	status int
	head   []byte
}

func (w *recordingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if n := 16 - len(w.head); n > 0 {
		w.head = append(w.head, b[:min(n, len(b))]...)
	}
	return w.ResponseWriter.Write(b)
}
