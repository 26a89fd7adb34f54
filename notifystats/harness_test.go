package notifystats

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/internal/natstest"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream"
)

// Credentials of the fake notify upstream: the app "default" and, through the apps file,
// the app "shop".
const (
	defaultAppID = "a1"
	defaultToken = "tok-secret-1"
	shopAppID    = "a2"
	shopToken    = "tok-secret-2"
	unknownTask  = 987654321 // the fake always answers stats for it; nobody tracks it
)

type fakeKey struct {
	appID string
	task  int64
}

// fakeNotify is a notify upstream whose task counters progress when the test says so.
type fakeNotify struct {
	mu       sync.Mutex
	tokens   map[string]string
	level    map[fakeKey]int64
	polls    map[fakeKey]int
	lastPoll map[fakeKey]time.Time
	calls    []fakeCall
	status   int    // HTTP status to answer instead of 200 (0: normal)
	code     int    // body code to answer instead of 200 (0: normal)
	message  string // body message of a failure
}

type fakeCall struct {
	appID string
	ids   []int64
}

func newFakeNotify() *fakeNotify {
	return &fakeNotify{
		tokens:   map[string]string{defaultAppID: defaultToken, shopAppID: shopToken},
		level:    map[fakeKey]int64{},
		polls:    map[fakeKey]int{},
		lastPoll: map[fakeKey]time.Time{},
	}
}

func (f *fakeNotify) set(appID string, level int64, ids ...int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		f.level[fakeKey{appID, id}] = level
	}
}

func (f *fakeNotify) fail(status, code int, message string) {
	f.mu.Lock()
	f.status, f.code, f.message = status, code, message
	f.mu.Unlock()
}

func (f *fakeNotify) pollCount(appID string, id int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls[fakeKey{appID, id}]
}

func (f *fakeNotify) lastPolled(appID string, id int64) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastPoll[fakeKey{appID, id}]
}

func (f *fakeNotify) callList() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCall(nil), f.calls...)
}

// counters are what the fake reports for a task at a level: different on every channel.
func counters(level int64, ch int) jobs.ChannelStats {
	return jobs.ChannelStats{Target: 100*level + int64(ch), Sent: 10*level + int64(ch), Received: level}
}

func (f *fakeNotify) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/push/task/detail" {
		http.NotFound(w, r)
		return
	}
	appID := r.Header.Get("app_id")
	if appID == "" {
		appID = r.Header.Get("App_id")
	}
	if tok, ok := f.tokens[appID]; !ok || r.Header.Get("access-token") != tok {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"code":10008,"message":"access-token invalid"}`))
		return
	}
	var req struct {
		List []int64 `json:"list"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fakeCall{appID: appID, ids: req.List})
	now := time.Now()
	for _, id := range req.List {
		k := fakeKey{appID, id}
		f.polls[k]++
		f.lastPoll[k] = now
	}
	if f.status != 0 || f.code != 0 {
		st := f.status
		if st == 0 {
			st = http.StatusOK
		}
		w.WriteHeader(st)
		_ = json.NewEncoder(w).Encode(map[string]any{"code": max(f.code, st), "message": f.message})
		return
	}
	data := []map[string]any{}
	item := func(id, level int64) map[string]any {
		m := map[string]any{"task_id": id}
		for i, ch := range channels {
			c := counters(level, i)
			m[ch+"_target"], m[ch+"_sent"], m[ch+"_received"] = c.Target, c.Sent, c.Received
		}
		return m
	}
	for _, id := range req.List {
		if lv, ok := f.level[fakeKey{appID, id}]; ok {
			data = append(data, item(id, lv))
		}
	}
	data = append(data, item(unknownTask, 7))
	_ = json.NewEncoder(w).Encode(map[string]any{"code": 200, "data": data, "message": nil})
}

// callLog records which replica asked for which tasks.
type callLog struct {
	mu    sync.Mutex
	polls map[string]map[fakeKey]int // replica → task → polls since reset
}

func (l *callLog) reset() {
	l.mu.Lock()
	l.polls = map[string]map[fakeKey]int{}
	l.mu.Unlock()
}

// byTask returns, for every task polled since the last reset, the replicas that polled it
// and how often.
func (l *callLog) byTask() map[fakeKey]map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[fakeKey]map[string]int{}
	for r, m := range l.polls {
		for k, n := range m {
			if out[k] == nil {
				out[k] = map[string]int{}
			}
			out[k][r] = n
		}
	}
	return out
}

// recorder is the Upstream of one replica: the real client, noting what it asks for.
type recorder struct {
	*upstream.Client
	replica string
	log     *callLog
}

func (r recorder) Do(ctx context.Context, app *config.App, req upstream.Request) upstream.Outcome {
	var body struct {
		List []int64 `json:"list"`
	}
	_ = json.Unmarshal(req.Body, &body)
	r.log.mu.Lock()
	m := r.log.polls[r.replica]
	if m == nil {
		m = map[fakeKey]int{}
		r.log.polls[r.replica] = m
	}
	for _, id := range body.List {
		m[fakeKey{app.Notify.AppID, id}]++
	}
	r.log.mu.Unlock()
	return r.Client.Do(ctx, app, req)
}

// syncBuffer collects log lines from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type published struct {
	stats jobs.NotifyStats
	msgID string
}

// testEnv is an embedded NATS server with the results stream, the fake upstream and a
// configuration pointing at it.
type testEnv struct {
	t     *testing.T
	ns    *server.Server
	fake  *fakeNotify
	cfg   config.Config
	calls *callLog
	logs  *syncBuffer
	js    jetstream.JetStream

	mu  sync.Mutex
	pub []published // stored in the results stream
	raw int         // publishes seen on the subject, duplicates the stream dropped included
}

func newEnv(t *testing.T, interval, pollFor string) *testEnv {
	t.Helper()
	fake := newFakeNotify()
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)

	apps := filepath.Join(t.TempDir(), "apps.json")
	if err := os.WriteFile(apps, []byte(`{"apps":{"shop":{"notify":{"app_id":"`+shopAppID+`","access_token":"`+shopToken+`"}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PUSH_NOTIFY_URL", srv.URL)
	t.Setenv("PUSH_NOTIFY_APP_ID", defaultAppID)
	t.Setenv("PUSH_NOTIFY_ACCESS_TOKEN", defaultToken)
	t.Setenv("PUSH_NOTIFY_STATS_INTERVAL", interval)
	t.Setenv("PUSH_NOTIFY_STATS_FOR", pollFor)
	t.Setenv("PUSH_APPS_FILE", apps)
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}

	ns := natstest.Start(t, natstest.JetStream(t, ""))

	e := &testEnv{t: t, ns: ns, fake: fake, cfg: cfg, calls: &callLog{}, logs: &syncBuffer{}}
	e.calls.reset()
	var nc *nats.Conn
	nc, e.js = e.connect()
	n := broker.NamesFrom(cfg)
	if _, err := nc.Subscribe(n.NotifyStatsSubject(), func(*nats.Msg) {
		e.mu.Lock()
		e.raw++
		e.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := e.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: n.ResultsStream(), Subjects: []string{n.Subject + ".results.>"}, Duplicates: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{n.NotifyStatsSubject()}})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var s jobs.NotifyStats
		if err := json.Unmarshal(m.Data(), &s); err != nil {
			t.Errorf("notify stats message is not JSON: %v", err)
			return
		}
		e.mu.Lock()
		e.pub = append(e.pub, published{stats: s, msgID: m.Headers().Get(jetstream.MsgIDHeader)})
		e.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return e
}

func (e *testEnv) connect() (*nats.Conn, jetstream.JetStream) {
	e.t.Helper()
	nc, err := nats.Connect(e.ns.ClientURL())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		e.t.Fatal(err)
	}
	return nc, js
}

// newPoller returns a Poller with its own NATS connection (to kill it alone).
func (e *testEnv) newPoller(replica string, breakers *upstream.Breakers) (*Poller, *nats.Conn) {
	e.t.Helper()
	nc, js := e.connect()
	client := &upstream.Client{HTTP: upstream.NewHTTPClient(2*time.Second, 4), NotifyURL: e.cfg.NotifyURL, MIMCURL: e.cfg.MIMCURL}
	log := zerolog.New(e.logs).Level(zerolog.DebugLevel).With().Str("replica", replica).Logger()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := New(ctx, Options{
		Config: e.cfg, JS: js, Client: recorder{Client: client, replica: replica, log: e.calls},
		Breakers: breakers, Logger: log, ReplicaID: replica,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return p, nc
}

// run starts p.Run; the returned stop cancels it and waits for it to return.
func (e *testEnv) run(p *Poller) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				e.t.Error("Run did not return after its context ended")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func (e *testEnv) track(p *Poller, app, requestID string, ids ...int64) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Track(ctx, app, requestID, ids); err != nil {
		e.t.Fatal(err)
	}
}

// statsOf returns what was published for one task, in order.
func (e *testEnv) statsOf(app string, id int64) []published {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []published
	for _, p := range e.pub {
		if p.stats.App == app && p.stats.TaskID == id {
			out = append(out, p)
		}
	}
	return out
}

// rawCount is how many times stats were published, also those the stream dropped as
// duplicates.
func (e *testEnv) rawCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.raw
}

func (e *testEnv) publishedCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pub)
}

// noDuplicates checks that no change was stored twice in the results stream.
func (e *testEnv) noDuplicates() {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := map[string]bool{}
	for _, p := range e.pub {
		if seen[p.msgID] {
			e.t.Errorf("change %s published twice", p.msgID)
		}
		seen[p.msgID] = true
	}
}

func (e *testEnv) kv() jetstream.KeyValue {
	e.t.Helper()
	kv, err := e.js.KeyValue(context.Background(), broker.NamesFrom(e.cfg).StatsBucket())
	if err != nil {
		e.t.Fatal(err)
	}
	return kv
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkStats checks a published message against the fake's counters at level.
func checkStats(t *testing.T, p published, app, requestID string, id, level int64) {
	t.Helper()
	s := p.stats
	if s.TaskID != id || s.App != app || s.RequestID != requestID {
		t.Errorf("published %+v, want task %d app %q request %q", s, id, app, requestID)
	}
	if len(s.Channels) != len(channels) {
		t.Errorf("task %d: %d channels published, want all %d: %v", id, len(s.Channels), len(channels), s.Channels)
	}
	for i, ch := range channels {
		if got, want := s.Channels[ch], counters(level, i); got != want {
			t.Errorf("task %d channel %s = %+v, want %+v", id, ch, got, want)
		}
	}
	if s.At.IsZero() {
		t.Errorf("task %d: no time", id)
	}
	if p.msgID == "" {
		t.Errorf("task %d: no Nats-Msg-Id", id)
	}
}

func ids(from int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = from + int64(i)
	}
	return out
}
