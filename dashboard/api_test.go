package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/internal/natstest"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream"
)

// env is a dashboard on an embedded NATS server with pushworker's streams, and no worker.
type env struct {
	t   *testing.T
	d   *Dashboard
	srv *httptest.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	n   broker.Names
}

func newEnv(t *testing.T, token string) *env {
	t.Helper()
	s := natstest.Start(t, natstest.JetStream(t, ""))
	nc, js := natstest.Connect(t, s)
	t.Setenv("PUSH_UI_ADMIN_TOKEN", token)
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := broker.EnsureStreams(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	n := broker.NamesFrom(c)
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: n.DedupBucket()}); err != nil {
		t.Fatal(err)
	}
	dnc, _ := natstest.Connect(t, s)
	d, err := New(Options{Config: c, NC: dnc, Breakers: upstream.NewBreakers(upstream.BreakerSettings{}), ReplicaID: "r1", Version: "test", Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, d: d, srv: srv, nc: nc, js: js, n: n}
}

// call makes a request and decodes the JSON answer into out (when not nil).
func (e *env) call(method, path, body, authz string, out any) int {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func (e *env) addDLQ(reqID string) uint64 {
	e.t.Helper()
	job := fmt.Appendf(nil, `{"request_id":%q,"payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, reqID)
	data, _ := json.Marshal(jobs.DLQEntry{Subject: e.n.JobSubject("p2p"), Data: job, Job: job,
		Result: jobs.Result{RequestID: reqID, Type: "p2p", App: "default", Status: jobs.StatusFailed, Attempts: 8, Error: jobs.Errorf(jobs.KindUpstreamUnavailable, "HTTP 503")}})
	m := nats.NewMsg(e.n.DLQSubject("p2p"))
	m.Data = data
	m.Header.Set(jobs.HeaderRequestID, reqID)
	ack, err := e.js.PublishMsg(context.Background(), m)
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

func (e *env) msgs(stream string) uint64 {
	e.t.Helper()
	st, err := e.js.Stream(context.Background(), stream)
	if err != nil {
		e.t.Fatal(err)
	}
	return st.CachedInfo().State.Msgs
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReadOnlyWithoutToken: without PUSH_UI_ADMIN_TOKEN the page reads but changes
// nothing, whatever the request carries.
func TestReadOnlyWithoutToken(t *testing.T) {
	e := newEnv(t, "")
	seq := e.addDLQ("ro-1")
	var st stateView
	if code := e.call("GET", "/ui/api/state", "", "", &st); code != 200 || st.Auth.TokenSet || st.Auth.Admin {
		t.Fatalf("state %d %+v", code, st.Auth)
	}
	var answer map[string]string
	for _, authz := range []string{"", "Bearer anything-at-all-0123"} {
		if code := e.call("POST", "/ui/api/dlq/replay", fmt.Sprintf(`{"seqs":[%d]}`, seq), authz, &answer); code != http.StatusForbidden || !strings.Contains(answer["error"], "read-only") {
			t.Fatalf("replay (%q): %d %v", authz, code, answer)
		}
	}
	if code := e.call("POST", "/ui/api/login", `{"token":""}`, "", &answer); code != http.StatusForbidden {
		t.Fatalf("login: %d %v", code, answer)
	}
	if e.msgs(e.n.DLQStream()) != 1 || e.msgs(e.n.JobsStream()) != 0 {
		t.Fatal("a refused replay changed the streams")
	}
	var page struct {
		Entries []dlqRow `json:"entries"`
	}
	if code := e.call("GET", "/ui/api/dlq", "", "", &page); code != 200 || len(page.Entries) != 1 || page.Entries[0].RequestID != "ro-1" {
		t.Fatalf("DLQ page %d %+v", code, page)
	}
	if code := e.call("GET", "/ui/api/dlq?type=a.b", "", "", &answer); code != http.StatusBadRequest {
		t.Fatalf("bad type: %d", code)
	}
}

// TestDLQPageShowReplay: pages, one entry shown, replay with the bearer token through
// dlq.Replay, and a second replay of the same entry reported as gone.
func TestDLQPageShowReplay(t *testing.T) {
	const token = "the-admin-token-0123"
	e := newEnv(t, token)
	var seqs []uint64
	for i := range 3 {
		seqs = append(seqs, e.addDLQ(fmt.Sprintf("d-%d", i)))
	}
	var page struct {
		Entries []dlqRow `json:"entries"`
		More    bool     `json:"more"`
	}
	if code := e.call("GET", "/ui/api/dlq?limit=2", "", "", &page); code != 200 || len(page.Entries) != 2 || !page.More || page.Entries[0].Seq != seqs[2] || page.Entries[0].Attempts != 8 {
		t.Fatalf("page %d %+v", code, page)
	}
	if code := e.call("GET", fmt.Sprintf("/ui/api/dlq?limit=2&before=%d", seqs[1]), "", "", &page); code != 200 || len(page.Entries) != 1 || page.More || page.Entries[0].RequestID != "d-0" {
		t.Fatalf("older page %d %+v", code, page)
	}
	var shown struct {
		Subject string          `json:"subject"`
		Data    json.RawMessage `json:"data"`
	}
	if code := e.call("GET", fmt.Sprintf("/ui/api/dlq/%d", seqs[1]), "", "", &shown); code != 200 || shown.Subject != "push.jobs.p2p" || !strings.Contains(string(shown.Data), `"d-1"`) {
		t.Fatalf("show %d %+v", code, shown)
	}
	if code := e.call("GET", "/ui/api/dlq/999", "", "", nil); code != http.StatusNotFound {
		t.Fatalf("show of a missing entry: %d", code)
	}
	var res struct {
		Replayed int        `json:"replayed"`
		Failed   int        `json:"failed"`
		Entries  []replayed `json:"entries"`
	}
	body := fmt.Sprintf(`{"seqs":[%d]}`, seqs[1])
	if code := e.call("POST", "/ui/api/dlq/replay", body, "Bearer "+token, &res); code != 200 || res.Replayed != 1 || res.Entries[0].RequestID != "d-1" || res.Entries[0].JobSeq != 1 {
		t.Fatalf("replay %d %+v", code, res)
	}
	if e.msgs(e.n.DLQStream()) != 2 || e.msgs(e.n.JobsStream()) != 1 {
		t.Fatal("the replay did not move the entry to the jobs stream")
	}
	if code := e.call("POST", "/ui/api/dlq/replay", body, "Bearer "+token, &res); code != 200 || res.Failed != 1 || !strings.Contains(res.Entries[0].Error, "no DLQ entry") {
		t.Fatalf("second replay %d %+v", code, res)
	}
	if code := e.call("POST", "/ui/api/dlq/replay", `{"seqs":[]}`, "Bearer "+token, nil); code != http.StatusBadRequest {
		t.Fatalf("empty replay: %d", code)
	}
}

// TestResultsUnderLoad: with a page open, 10,000 results published as fast as possible
// are all counted (or reported dropped), the kept sample stays bounded, and a refresh of
// the state stays small and quick.
func TestResultsUnderLoad(t *testing.T) {
	e := newEnv(t, "")
	e.call("GET", "/ui/api/state", "", "", nil) // a page opens
	waitFor(t, 5*time.Second, "the results subscription", func() bool {
		e.d.mu.Lock()
		defer e.d.mu.Unlock()
		return e.d.resSub != nil
	})
	const total = 10000
	start := time.Now()
	for i := range total {
		m := nats.NewMsg("push.results.p2p")
		st := jobs.StatusSent
		if i%1000 == 0 {
			st = jobs.StatusRejected
		}
		m.Data = resultJSON(i, st)
		m.Header.Set(jobs.HeaderStatus, string(st))
		m.Header.Set(jobs.HeaderRequestID, fmt.Sprintf("r-%d", i))
		if err := e.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	rate := float64(total) / time.Since(start).Seconds()
	waitFor(t, 30*time.Second, "every result counted or dropped", func() bool {
		e.d.results.mu.Lock()
		seen := e.d.results.seen
		e.d.results.mu.Unlock()
		return seen+e.d.dropped() >= total
	})
	var st stateView
	t0 := time.Now()
	req, _ := http.NewRequest("GET", e.srv.URL+"/ui/api/state", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(t0)
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Results.Seen+st.Results.Dropped < total || st.Results.Totals[2] == 0 || len(st.Results.Recent) > recentLimit || e.d.results.n > ringSize {
		t.Fatalf("seen %d dropped %d totals %v recent %d ring %d", st.Results.Seen, st.Results.Dropped, st.Results.Totals, len(st.Results.Recent), e.d.results.n)
	}
	if len(b) > 256<<10 || took > time.Second {
		t.Fatalf("a refresh is %d bytes and took %v", len(b), took)
	}
	t.Logf("published %d results at %.0f/s; state %d bytes in %v; %d dropped", total, rate, len(b), took, st.Results.Dropped)

	// Once no page has asked for a while, the subscription goes.
	e.d.lastSeen.Store(time.Now().Add(-watchFor - time.Second).UnixNano())
	waitFor(t, 5*time.Second, "the results subscription to end", func() bool {
		e.d.mu.Lock()
		defer e.d.mu.Unlock()
		return e.d.resSub == nil
	})
}

// TestLookupIsBounded: a lookup reads the headers of the newest results only, finds a
// request id there and in the DLQ, and says how far back it looked.
func TestLookupIsBounded(t *testing.T) {
	e := newEnv(t, "")
	const window = 2000 // lookupResultsWindow in production; smaller, so that the race detector keeps the test quick
	e.d.lookupWindows[0] = window
	const total = window + 500
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range total {
		if i%500 == 0 { // keep the async publishes in bounds
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatal("publishing took too long")
			}
		}
		id := fmt.Sprintf("r-%d", i)
		switch i {
		case 10:
			id = "needle-old"
		case total - 100:
			id = "needle-new"
		}
		m := nats.NewMsg("push.results.p2p")
		m.Data = fmt.Appendf(nil, `{"request_id":%q,"type":"p2p","app":"default","status":"sent","attempts":2,"upstream":{"http_status":200,"code":200,"message":"success"}}`, id)
		m.Header.Set(jobs.HeaderRequestID, id)
		m.Header.Set(jobs.HeaderStatus, "sent")
		if _, err := js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishing took too long")
	}
	if n := e.msgs(e.n.ResultsStream()); n != total {
		t.Fatalf("%d results stored, want %d", n, total)
	}
	e.addDLQ("needle-new")

	var v lookupView
	start := time.Now()
	if code := e.call("GET", "/ui/api/lookup?request_id=needle-new", "", "", &v); code != 200 {
		t.Fatalf("lookup %d", code)
	}
	took := time.Since(start)
	if !v.Found || len(v.Results) != 1 || len(v.DLQ) != 1 || v.Searched.Results != window || len(v.Errors) > 0 {
		t.Fatalf("needle-new: %+v", v)
	}
	var r jobs.Result
	if err := json.Unmarshal(v.Results[0].Data, &r); err != nil || r.Attempts != 2 || r.Upstream == nil || r.Upstream.HTTPStatus != 200 {
		t.Fatalf("result %s (%v)", v.Results[0].Data, err)
	}
	if code := e.call("GET", "/ui/api/lookup?request_id=needle-old", "", "", &v); code != 200 || v.Found || v.Searched.Results != window {
		t.Fatalf("needle-old is beyond the window: %d %+v", code, v)
	}
	if code := e.call("GET", "/ui/api/lookup?request_id=", "", "", nil); code != http.StatusBadRequest {
		t.Fatalf("empty id: %d", code)
	}
	t.Logf("a lookup over %d results took %v", window, took)
}
