package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/upstream/sandbox"
)

// ---- waiting ----

// eventually polls cond until it holds or d passes, then fails the test naming what.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- NATS ----

// natsNode is a nats-server running in the test process that can be stopped and started
// again on the same port and store.
type natsNode struct {
	t    testing.TB
	opts server.Options
	mu   sync.Mutex
	srv  *server.Server
}

// startNATS starts a single JetStream node on a loopback port of its own; opts may change
// its options first.
func startNATS(t testing.TB, opts ...func(*server.Options)) *natsNode {
	t.Helper()
	n := &natsNode{t: t, opts: server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	}}
	for _, o := range opts {
		o(&n.opts)
	}
	n.start()
	n.opts.Port = n.srv.Addr().(*net.TCPAddr).Port // a restart reuses the port
	t.Cleanup(n.stop)
	return n
}

// start starts the server with the node's options (again, after stop).
func (n *natsNode) start() {
	n.t.Helper()
	o := n.opts
	s, err := server.NewServer(&o)
	if err != nil {
		n.t.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		s.Shutdown()
		n.t.Fatalf("nats-server %s did not start", o.ServerName)
	}
	n.mu.Lock()
	n.srv = s
	n.mu.Unlock()
}

// stop shuts the server down and waits until it is down. It is a no-op when stopped.
func (n *natsNode) stop() {
	n.mu.Lock()
	s := n.srv
	n.srv = nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port) }

// connect opens a test connection that reconnects forever.
func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Name("e2e test"))
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// publish publishes one job with JetStream and returns its stream sequence.
func publish(t testing.TB, js jetstream.JetStream, subject string, data []byte, msgID string) uint64 {
	t.Helper()
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if msgID != "" {
		msg.Header.Set(nats.MsgIdHdr, msgID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatalf("publishing to %s: %v", subject, err)
	}
	return ack.Sequence
}

// publishMany publishes jobs asynchronously and waits for every ack.
func publishMany(t testing.TB, js jetstream.JetStream, subject string, data [][]byte) {
	t.Helper()
	futures := make([]jetstream.PubAckFuture, 0, len(data))
	for _, d := range data {
		f, err := js.PublishAsync(subject, d)
		if err != nil {
			t.Fatalf("publishing to %s: %v", subject, err)
		}
		futures = append(futures, f)
	}
	timeout := time.After(30 * time.Second)
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatalf("publishing to %s: %v", subject, err)
		case <-timeout:
			t.Fatalf("%d publishes to %s not acknowledged", js.PublishAsyncPending(), subject)
		}
	}
}

// p2pJob is a valid p2p job whose message is its request id, so that the upstream calls
// can be told apart.
func p2pJob(id string) []byte {
	return []byte(fmt.Sprintf(`{"request_id":%q,"payload":{"fromAccount":"e2e","toAccount":"u1","msg":%q}}`, id, id))
}

// ---- streams: results and DLQ entries ----

// streamMsg is one message of a stream.
type streamMsg struct {
	Subject string
	Header  nats.Header
	Data    []byte
	Seq     uint64
}

// watcher follows a stream from its first message with an ordered consumer.
type watcher struct {
	t    testing.TB
	mu   sync.Mutex
	msgs []streamMsg
}

// watchStream follows stream (which must exist) from its start.
func watchStream(t testing.TB, js jetstream.JetStream, stream string) *watcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("ordered consumer on %s: %v", stream, err)
	}
	w := &watcher{t: t}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, _ := m.Metadata()
		sm := streamMsg{Subject: m.Subject(), Header: m.Headers(), Data: append([]byte(nil), m.Data()...)}
		if md != nil {
			sm.Seq = md.Sequence.Stream
		}
		w.mu.Lock()
		w.msgs = append(w.msgs, sm)
		w.mu.Unlock()
	})
	if err != nil {
		t.Fatalf("consuming %s: %v", stream, err)
	}
	t.Cleanup(cc.Stop)
	return w
}

func (w *watcher) all() []streamMsg {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]streamMsg(nil), w.msgs...)
}

// snapshotStream reads every message a stream holds now.
func snapshotStream(js jetstream.JetStream, stream string) ([]streamMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	var out []streamMsg
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		last := false
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			out = append(out, streamMsg{Subject: m.Subject(), Header: m.Headers(), Data: append([]byte(nil), m.Data()...), Seq: md.Sequence.Stream})
			last = md.NumPending == 0
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if last {
			return out, nil
		}
		if n == 0 {
			return nil, fmt.Errorf("reading %s: got %d of %d messages", stream, len(out), info.State.Msgs)
		}
	}
}

// result is a result message as §5 of the contract describes it, decoded by this package
// (not the product's type) so that a renamed field shows.
type result struct {
	RequestID    string   `json:"request_id"`
	Type         string   `json:"type"`
	App          string   `json:"app"`
	Status       string   `json:"status"`
	PacketID     string   `json:"packet_id"`
	PacketIDs    []string `json:"packet_ids"`
	FailTopicIDs []string `json:"fail_topic_ids"`
	TaskID       *int64   `json:"task_id"`
	TaskIDs      []int64  `json:"task_ids"`
	Attempts     int      `json:"attempts"`
	Duplicate    bool     `json:"duplicate"`
	Upstream     *struct {
		HTTPStatus int    `json:"http_status"`
		Code       int    `json:"code"`
		Message    string `json:"message"`
	} `json:"upstream"`
	Error *struct {
		Kind   string `json:"kind"`
		Detail string `json:"detail"`
	} `json:"error"`
	JobSeq      uint64    `json:"job_seq"`
	EnqueuedAt  time.Time `json:"enqueued_at"`
	CompletedAt time.Time `json:"completed_at"`

	Subject string      `json:"-"`
	Header  nats.Header `json:"-"`
	Raw     []byte      `json:"-"`
}

func (r result) String() string { return r.Subject + " " + string(r.Raw) }

func (r result) kind() string {
	if r.Error == nil {
		return ""
	}
	return r.Error.Kind
}

func decodeResult(t testing.TB, m streamMsg) result {
	t.Helper()
	var r result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatalf("result on %s is not JSON of §5: %v: %s", m.Subject, err, m.Data)
	}
	r.Subject, r.Header, r.Raw = m.Subject, m.Header, m.Data
	return r
}

// decodeResults decodes the messages that are results (notify delivery stats excluded).
func decodeResults(t testing.TB, msgs []streamMsg) []result {
	t.Helper()
	var out []result
	for _, m := range msgs {
		if strings.HasSuffix(m.Subject, ".notify_stats") {
			continue
		}
		out = append(out, decodeResult(t, m))
	}
	return out
}

func (w *watcher) results() []result { return decodeResults(w.t, w.all()) }

// resultsOf returns the results of one request id, in stream order.
func (w *watcher) resultsOf(id string) []result {
	var out []result
	for _, r := range w.results() {
		if r.RequestID == id {
			out = append(out, r)
		}
	}
	return out
}

// waitResult waits for the first result of a request id.
func (w *watcher) waitResult(id string, d time.Duration) result {
	w.t.Helper()
	var got []result
	eventually(w.t, d, "a result of "+id, func() bool { got = w.resultsOf(id); return len(got) > 0 })
	return got[0]
}

// waitResults waits until n results of a request id are there.
func (w *watcher) waitResults(id string, n int, d time.Duration) []result {
	w.t.Helper()
	var got []result
	eventually(w.t, d, fmt.Sprintf("%d results of %s", n, id), func() bool { got = w.resultsOf(id); return len(got) >= n })
	return got
}

// dlqEntry is a DLQ entry as §5 describes it.
type dlqEntry struct {
	Subject string          `json:"subject"`
	Data    []byte          `json:"data"`
	Job     json.RawMessage `json:"job"`
	Result  result          `json:"result"`

	MsgSubject string `json:"-"`
	Raw        []byte `json:"-"`
}

func (w *watcher) dlq() []dlqEntry {
	var out []dlqEntry
	for _, m := range w.all() {
		var e dlqEntry
		if err := json.Unmarshal(m.Data, &e); err != nil {
			w.t.Fatalf("DLQ entry on %s is not JSON of §5: %v: %s", m.Subject, err, m.Data)
		}
		e.MsgSubject, e.Raw = m.Subject, m.Data
		out = append(out, e)
	}
	return out
}

// waitDLQ waits for the DLQ entry of a request id.
func (w *watcher) waitDLQ(id string, d time.Duration) dlqEntry {
	w.t.Helper()
	var got dlqEntry
	eventually(w.t, d, "a DLQ entry of "+id, func() bool {
		for _, e := range w.dlq() {
			if e.Result.RequestID == id {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

// ---- the sandbox upstream ----

func startSandbox(t testing.TB, cfg sandbox.Config) *sandbox.Server {
	t.Helper()
	sb := sandbox.New(cfg)
	if _, err := sb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	return sb
}

// callsByID counts the sandbox's requests under path by their msg or message field, which
// the tests set to the request id.
func callsByID(sb *sandbox.Server, path string) map[string]int {
	calls := map[string]int{}
	for _, r := range sb.Requests() {
		if !strings.HasPrefix(r.Path, path) {
			continue
		}
		var b struct{ Msg, Message string }
		_ = json.Unmarshal(r.Body, &b)
		calls[b.Msg+b.Message]++
	}
	return calls
}

// ---- the worker process ----

// syncBuffer collects a child's output.
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

// childEnv is the whole environment of a child: PATH, HOME and vars.
func childEnv(vars map[string]string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+vars[k])
	}
	return env
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// workerProc is one running pushworker binary.
type workerProc struct {
	t     testing.TB
	name  string
	cmd   *exec.Cmd
	out   *syncBuffer
	admin string
	done  chan struct{}
}

// startWorker runs the binary with exactly vars (plus PATH and HOME) and a fresh
// PUSH_ADMIN_ADDR, and waits until /healthz answers 200.
func startWorker(t testing.TB, vars map[string]string) *workerProc {
	t.Helper()
	w := launchWorker(t, vars)
	w.waitHealthy(30 * time.Second)
	return w
}

// launchWorker runs the binary without waiting for it to be healthy.
func launchWorker(t testing.TB, vars map[string]string) *workerProc {
	t.Helper()
	vars = maps.Clone(vars)
	vars["PUSH_ADMIN_ADDR"] = freeAddr(t)
	cmd := exec.Command(workerBin)
	cmd.Env = childEnv(vars)
	cmd.Dir = t.TempDir()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", workerBin, err)
	}
	w := &workerProc{t: t, name: fmt.Sprintf("pushworker[%d]", cmd.Process.Pid), cmd: cmd, out: out, admin: vars["PUSH_ADMIN_ADDR"], done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() {
		if !w.exited() {
			_ = cmd.Process.Kill()
			<-w.done
		}
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", w.name, tail(out.String(), 12000))
		}
	})
	return w
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func (w *workerProc) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// output is everything the child wrote to stdout and stderr so far.
func (w *workerProc) output() string { return w.out.String() }

// exitCode is the child's exit code after it exited (-1 if a signal ended it).
func (w *workerProc) exitCode() int { return w.cmd.ProcessState.ExitCode() }

// waitHealthy waits until /healthz answers 200; it fails at once if the child exits.
func (w *workerProc) waitHealthy(d time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(d)
	for {
		if w.exited() {
			w.t.Fatalf("%s exited with code %d before it was healthy:\n%s", w.name, w.exitCode(), tail(w.output(), 4000))
		}
		if code, _, err := w.get("/healthz"); err == nil && code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s not healthy after %v", w.name, d)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// get asks the admin HTTP server.
func (w *workerProc) get(path string) (int, string, error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + w.admin + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// signal sends sig to the child.
func (w *workerProc) signal(sig os.Signal) {
	w.t.Helper()
	if err := w.cmd.Process.Signal(sig); err != nil {
		w.t.Fatalf("signalling %s: %v", w.name, err)
	}
}

// waitExit waits up to d for the child to exit and reports whether it did.
func (w *workerProc) waitExit(d time.Duration) bool {
	select {
	case <-w.done:
		return true
	case <-time.After(d):
		return false
	}
}

// kill ends the child with SIGKILL and waits for it.
func (w *workerProc) kill() {
	w.signal(syscall.SIGKILL)
	<-w.done
}

// stop ends the child with SIGTERM and fails unless it exits 0 within d.
func (w *workerProc) stop(d time.Duration) {
	w.t.Helper()
	w.signal(syscall.SIGTERM)
	if !w.waitExit(d) {
		w.t.Fatalf("%s did not exit within %v of SIGTERM", w.name, d)
	}
	if c := w.exitCode(); c != 0 {
		w.t.Fatalf("%s exited with code %d after SIGTERM", w.name, c)
	}
}

// ---- a test environment: NATS, sandbox, worker variables ----

type env struct {
	t    testing.TB
	nats *natsNode
	sb   *sandbox.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	vars map[string]string
}

// newEnv starts a NATS node and a sandbox with the default configuration and prepares
// the worker's variables; vars override or add to the defaults.
func newEnv(t testing.TB, vars map[string]string) *env {
	return newEnvSandbox(t, sandbox.DefaultConfig(), vars)
}

func newEnvSandbox(t testing.TB, cfg sandbox.Config, vars map[string]string) *env {
	t.Helper()
	e := &env{t: t, nats: startNATS(t), sb: startSandbox(t, cfg)}
	e.nc, e.js = connect(t, e.nats.url())
	e.vars = map[string]string{
		"PUSH_NATS_URL":            e.nats.url(),
		"PUSH_MIMC_URL":            e.sb.URL(),
		"PUSH_NOTIFY_URL":          e.sb.URL(),
		"PUSH_MIMC_APP_ID":         sandbox.DefaultMIMCAppID,
		"PUSH_MIMC_APP_KEY":        sandbox.DefaultMIMCAppKey,
		"PUSH_MIMC_APP_SECRET":     sandbox.DefaultMIMCAppSecret,
		"PUSH_NOTIFY_APP_ID":       sandbox.DefaultNotifyAppID,
		"PUSH_NOTIFY_ACCESS_TOKEN": sandbox.DefaultNotifyToken,
		"PUSH_LOG_LEVEL":           "debug",
		"PUSH_DATA_DIR":            t.TempDir(),
		"PUSH_SHUTDOWN_TIMEOUT":    "10s",
		"PUSH_RETRY_INITIAL":       "100ms",
		"PUSH_RETRY_MAX":           "1s",
	}
	for k, v := range vars {
		e.vars[k] = v
	}
	return e
}

func (e *env) start() *workerProc { e.t.Helper(); return startWorker(e.t, e.vars) }

func (e *env) results() *watcher { e.t.Helper(); return watchStream(e.t, e.js, "PUSH_RESULTS") }
func (e *env) dlq() *watcher     { e.t.Helper(); return watchStream(e.t, e.js, "PUSH_DLQ") }

func (e *env) publish(subject string, data []byte) uint64 {
	e.t.Helper()
	return publish(e.t, e.js, subject, data, "")
}
