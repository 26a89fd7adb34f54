package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
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
	"github.com/pushworker/pushworker/worker"
)

const (
	testAppID  = "2882303761517"
	testKey    = "key-S3CRET-1234"
	testSecret = "secret-S3CRET-5678"
)

// natsMaxPayload is the max_payload of the servers startNATS starts (tests of this package
// do not run in parallel).
var natsMaxPayload int32 = 8 << 20

// startNATS starts an embedded JetStream server for one test.
func startNATS(t *testing.T, dir string) *server.Server {
	t.Helper()
	return natstest.Start(t, natstest.JetStream(t, dir), func(o *server.Options) { o.MaxPayload = natsMaxPayload })
}

// fakeUpstream is an httptest MIMC/notify upstream whose answers a test programs.
type fakeUpstream struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []recorded
	answer  func(r recorded) (int, string)
	packets int
}

type recorded struct {
	Path   string
	Header http.Header
	Body   []byte
}

func (f *fakeUpstream) setAnswer(a func(r recorded) (int, string)) {
	f.mu.Lock()
	f.answer = a
	f.mu.Unlock()
}

func (f *fakeUpstream) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func newFakeUpstream(t *testing.T) *fakeUpstream {
	f := &fakeUpstream{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec := recorded{Path: r.URL.Path, Header: r.Header.Clone(), Body: b}
		f.mu.Lock()
		f.reqs = append(f.reqs, rec)
		f.packets++
		n := f.packets
		a := f.answer
		f.mu.Unlock()
		status, body := 200, ""
		if a != nil {
			status, body = a(rec)
		}
		if body == "" && status == 200 {
			body = `{"code":200,"message":"success","data":{"packetId":"pk-` + itoa(n) + `"}}`
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(f.Close)
	return f
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// noLimit is a Limiter that never waits.
type noLimit struct{}

func (noLimit) Wait(context.Context, string, string, int, func()) error { return nil }
func (noLimit) Penalize(string, string, time.Duration)                  {}
func (noLimit) Throttled(string, string) bool                           { return false }
func (noLimit) Admit(context.Context, string, string, int) error        { return nil }

// env is one test's world: NATS, the upstream, and a running worker.
type env struct {
	t       *testing.T
	srv     *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	up      *fakeUpstream
	cfg     config.Config
	logs    *syncBuffer
	results chan *nats.Msg
	stop    context.CancelFunc
	done    chan struct{}
}

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

// testConfig loads the configuration from the environment with vars set on top.
func testConfig(t *testing.T, up string, vars map[string]string) config.Config {
	t.Helper()
	base := map[string]string{
		"PUSH_MIMC_URL": up, "PUSH_MIMC_APP_ID": testAppID, "PUSH_MIMC_APP_KEY": testKey, "PUSH_MIMC_APP_SECRET": testSecret,
		"PUSH_RETRY_INITIAL": "20ms", "PUSH_RETRY_MAX": "100ms", "PUSH_MAX_ATTEMPTS": "3", "PUSH_SHUTDOWN_TIMEOUT": "5s",
		"PUSH_LOG_LEVEL": "debug",
	}
	for k, v := range vars {
		base[k] = v
	}
	for k, v := range base {
		t.Setenv(k, v)
	}
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newEnv(t *testing.T, vars map[string]string) *env {
	return newEnvWith(t, newFakeUpstream(t), vars)
}

func newEnvWith(t *testing.T, up *fakeUpstream, vars map[string]string, opts ...func(*worker.Options)) *env {
	e := &env{t: t, up: up, logs: &syncBuffer{}}
	e.srv = startNATS(t, "")
	e.cfg = testConfig(t, e.up.URL, vars)
	e.connect()
	e.results = make(chan *nats.Msg, 10000)
	if _, err := e.nc.ChanSubscribe("push.results.>", e.results); err != nil {
		t.Fatal(err)
	}
	e.startWorker(noLimit{}, opts...)
	return e
}

func (e *env) connect() {
	nc, err := nats.Connect(e.srv.ClientURL())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	e.nc = nc
	e.js, _ = jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := broker.EnsureStreams(ctx, e.js, e.cfg); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) startWorker(lim worker.Limiter, opts ...func(*worker.Options)) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := zerolog.New(e.logs).Level(zerolog.DebugLevel)
	client := &upstream.Client{HTTP: upstream.NewHTTPClient(2*time.Second, 16), MIMCURL: e.cfg.MIMCURL, NotifyURL: e.cfg.NotifyURL}
	o := worker.Options{
		Config: e.cfg, Logger: log, JS: e.js, Sender: client, Limiter: lim,
		Breakers: upstream.NewBreakers(upstream.BreakerSettings{OpenFor: 300 * time.Millisecond, ProbeEvery: 200 * time.Millisecond}),
		AckWait:  5 * time.Second,
	}
	for _, f := range opts {
		f(&o)
	}
	w, err := worker.New(ctx, o)
	if err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	e.stop, e.done = cancel, done
	e.t.Cleanup(func() { cancel(); <-done })
}

func (e *env) stopWorker() {
	e.stop()
	<-e.done
}

// publish sends a job and returns its stream sequence.
func (e *env) publish(typ string, job any, hdr ...string) uint64 {
	e.t.Helper()
	var data []byte
	switch v := job.(type) {
	case string:
		data = []byte(v)
	case []byte:
		data = v
	default:
		data, _ = json.Marshal(v)
	}
	m := nats.NewMsg("push.jobs." + typ)
	m.Data = data
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	ack, err := e.js.PublishMsg(context.Background(), m)
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

// result waits for the next result.
func (e *env) result(timeout time.Duration) (*jobs.Result, *nats.Msg) {
	e.t.Helper()
	select {
	case m := <-e.results:
		var r jobs.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			e.t.Fatalf("result is not JSON: %v: %s", err, m.Data)
		}
		return &r, m
	case <-time.After(timeout):
		e.t.Fatalf("no result within %v", timeout)
	}
	return nil, nil
}

// noResult checks that nothing more is published for a while.
func (e *env) noResult(d time.Duration) {
	e.t.Helper()
	select {
	case m := <-e.results:
		e.t.Fatalf("unexpected result: %s", m.Data)
	case <-time.After(d):
	}
}

// dlq reads every DLQ entry.
func (e *env) dlq() []jobs.DLQEntry {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := e.js.OrderedConsumer(ctx, "PUSH_DLQ", jetstream.OrderedConsumerConfig{})
	if err != nil {
		e.t.Fatal(err)
	}
	info, _ := e.js.Stream(ctx, "PUSH_DLQ")
	n := info.CachedInfo().State.Msgs
	var out []jobs.DLQEntry
	for uint64(len(out)) < n {
		m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			e.t.Fatal(err)
		}
		var d jobs.DLQEntry
		if err := json.Unmarshal(m.Data(), &d); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func p2pJob(id string) map[string]any {
	return map[string]any{"request_id": id, "payload": map[string]any{"fromAccount": "shop", "toAccount": "u42", "msg": "hello"}}
}

// startWorkerOwnConn runs a worker on its own NATS connection and returns a function that
// kills it abruptly: the connection is closed with nothing acked or handed back, as when the
// process dies (kill -9). Upstream calls already sent still reach the upstream.
func (e *env) startWorkerOwnConn(lim worker.Limiter) (kill func(), stop func()) {
	e.t.Helper()
	nc, err := nats.Connect(e.srv.ClientURL())
	if err != nil {
		e.t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(context.Background())
	log := zerolog.New(e.logs).Level(zerolog.DebugLevel)
	client := &upstream.Client{HTTP: upstream.NewHTTPClient(2*time.Second, 16), MIMCURL: e.cfg.MIMCURL, NotifyURL: e.cfg.NotifyURL}
	sender := &mortalSender{Client: client}
	w, err := worker.New(ctx, worker.Options{
		Config: e.cfg, Logger: log, JS: js, Sender: sender, Limiter: lim,
		Breakers: upstream.NewBreakers(upstream.BreakerSettings{}),
		AckWait:  2 * time.Second,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	var once sync.Once
	kill = func() { once.Do(func() { sender.dead.Store(true); nc.Close(); cancel() }) }
	stop = func() { once.Do(func() { cancel(); <-done; nc.Close() }) }
	e.t.Cleanup(func() { kill(); <-done })
	return kill, stop
}

// mortalSender stops making new upstream calls once its process is "dead"; calls already
// on the wire complete, as they do when a real process is killed.
type mortalSender struct {
	*upstream.Client
	dead atomic.Bool
}

func (s *mortalSender) Push(ctx context.Context, spec *jobs.Spec, app *config.App, body []byte) upstream.Outcome {
	if s.dead.Load() {
		<-ctx.Done() // a dead process makes no call and never answers
		return upstream.Outcome{Kind: upstream.Retryable, Err: jobs.Errorf(jobs.KindUpstreamUnavailable, "dead")}
	}
	return s.Client.Push(ctx, spec, app, body)
}
