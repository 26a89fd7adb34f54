package dashboard_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/service"
)

var screenshot = flag.String("screenshot", "", "TestBrowser also writes a screenshot of the dashboard to this PNG file (go test ./dashboard -run TestBrowser -screenshot ../docs/dashboard.png)")

const adminToken = "test-admin-token-0123456789"

// chromiumPath finds the browser. Without one the browser tests fail, unless
// PUSH_UI_BROWSER_OPTIONAL=1 lets them skip.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("PUSH_UI_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if os.Getenv("PUSH_UI_BROWSER_OPTIONAL") == "1" {
		t.Skip("chromium is not installed (apt-get install chromium); skipped because PUSH_UI_BROWSER_OPTIONAL=1")
	}
	t.Fatal("the browser tests need chromium: apt-get install chromium (.ci/run installs it), or set PUSH_UI_CHROMIUM to a Chrome binary; PUSH_UI_BROWSER_OPTIONAL=1 skips them")
	return ""
}

// logLines collects the JSON log lines of an in-process worker.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.raw.Write(p)
	sc := bufio.NewScanner(bytes.NewReader(p))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			l.lines = append(l.lines, m)
		}
	}
	return len(p), nil
}

// field returns a string field of the first line whose message starts with msg.
func (l *logLines) field(msg, name string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.lines {
		if s, _ := m["message"].(string); strings.HasPrefix(s, msg) {
			v, _ := m[name].(string)
			return v
		}
	}
	return ""
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw.String()
}

// sandboxWorker is `pushworker --sandbox` running in the test process.
type sandboxWorker struct {
	dashboard, admin, sandbox string
	js                        jetstream.JetStream
	logs                      *logLines
}

// startSandbox runs the worker in sandbox mode with the environment env (on top of a
// fresh data directory and free ports), waits until it is ready and connects to its NATS.
func startSandbox(t *testing.T, env map[string]string) *sandboxWorker {
	t.Helper()
	base := map[string]string{
		"PUSH_DATA_DIR": t.TempDir(), "PUSH_EMBEDDED_LISTEN": "127.0.0.1:-1", "PUSH_ADMIN_ADDR": "127.0.0.1:0",
		"PUSH_LOG_LEVEL": "info",
	}
	for k, v := range env {
		base[k] = v
	}
	for k, v := range base {
		t.Setenv(k, v)
	}
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	c.Sandbox = true
	logs := &logLines{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- service.Run(ctx, c, zerolog.New(logs)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker stopped with %v", err)
			}
		case <-time.After(40 * time.Second):
			t.Error("the worker did not stop")
		}
		if t.Failed() {
			t.Logf("worker log:\n%s", logs)
		}
	})
	w := &sandboxWorker{logs: logs}
	deadline := time.Now().Add(30 * time.Second)
	for logs.field("sandbox ready", "message") == "" {
		select {
		case err := <-done:
			t.Fatalf("the worker stopped while starting: %v\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox worker did not get ready:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.dashboard = logs.field("sandbox ready", "dashboard")
	w.admin = "http://" + logs.field("admin HTTP server", "addr")
	w.sandbox = logs.field("sandbox upstream running", "url")
	nc, err := nats.Connect(logs.field("embedded NATS server", "url"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if w.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *sandboxWorker) publish(t *testing.T, typ, requestID, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := w.js.Publish(ctx, "push.jobs."+typ, []byte(fmt.Sprintf(`{"request_id":%q,"payload":%s}`, requestID, payload))); err != nil {
		t.Fatal(err)
	}
}

// fault sets the sandbox upstream's fault injection (POST /_sandbox/fault).
func (w *sandboxWorker) fault(t *testing.T, body string) {
	t.Helper()
	resp, err := http.Post(w.sandbox+"/_sandbox/fault", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("fault %s: %s %s", body, resp.Status, b)
	}
}

// browser starts headless Chromium with an empty profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1400, 1900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// page drives one page with deadlines.
type page struct {
	t   *testing.T
	ctx context.Context
}

func (p *page) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, wait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression that returns a string.
func (p *page) eval(what, expr string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, wait)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
	return s
}

// waitJS waits until a JavaScript expression is true.
func (p *page) waitJS(what, expr string, d time.Duration) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, d+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		body, _ := chromedp.Run(p.ctx, chromedp.Text(chromedp.CSS("main")))
		p.t.Fatalf("waiting for %s (%s): %v\npage:\n%s", what, expr, err, body)
	}
}

// click clicks the element a selector finds, once it exists.
func (p *page) click(sel string) {
	p.t.Helper()
	p.waitJS(sel, fmt.Sprintf(`document.querySelector(%q) !== null`, sel), wait)
	p.eval("click "+sel, fmt.Sprintf(`(document.querySelector(%q).click(), "")`, sel))
}

func (p *page) text(sel string) string {
	p.t.Helper()
	return p.eval("text of "+sel, fmt.Sprintf(`(document.querySelector(%q)||{}).textContent||""`, sel))
}

func (p *page) setValue(sel, v string) {
	p.t.Helper()
	p.run("set "+sel, chromedp.SetValue(chromedp.CSS(sel), v))
}

// wait bounds each step of the browser tests. Steps take well under a second on an idle
// machine; the bound is for a loaded one, and a passing run never waits it out.
const wait = 30 * time.Second

const p2pPayload = `{"fromAccount":"shop","toAccount":"u42","msg":"hello"}`

// TestBrowser drives the dashboard of a sandbox worker in headless Chromium: jobs sent show
// up as backlog and results, a request id is found with its attempts and upstream answer,
// a DLQ entry of a job that failed is replayed and sent, and a write without the token is
// refused.
func TestBrowser(t *testing.T) {
	chromiumPath(t) // before starting a worker for nothing
	w := startSandbox(t, map[string]string{
		"PUSH_UI_ADMIN_TOKEN": adminToken,
		"PUSH_MAX_ATTEMPTS":   "2", "PUSH_RETRY_INITIAL": "200ms", "PUSH_RETRY_MAX": "200ms",
		"PUSH_RATE_P2T":              "5", // a backlog that lasts a few seconds
		"PUSH_NOTIFY_STATS_INTERVAL": "1s",
	})
	if w.dashboard != w.admin+"/ui/" || !strings.Contains(w.logs.field("sandbox ready", "message"), "dashboard: "+w.dashboard) {
		t.Fatalf("the start log names the dashboard %q (admin %s)", w.dashboard, w.admin)
	}
	p := &page{t: t, ctx: browser(t)}
	start := time.Now()
	p.run("open the dashboard", chromedp.Navigate(w.admin+"/")) // / leads to /ui/
	p.waitJS("the first refresh", `document.getElementById("replica").textContent.includes("dev")`, wait)
	if got := p.text("#auth-state"); got != "read-only" {
		t.Fatalf("before login the page says %q, want read-only", got)
	}

	// Backlog and results.
	for i := range 40 {
		w.publish(t, "p2t", fmt.Sprintf("backlog-%d", i), `{"fromAccount":"shop","topicId":"42","msg":"hi"}`)
	}
	w.publish(t, "p2p", "hello-ui-1", p2pPayload)
	p.waitJS("the p2t backlog", `Number(document.querySelector('#backlog tr[data-type="p2t"] .backlog-stored').textContent.replace(/,/g, "")) > 0`, wait)
	p.waitJS("the result of hello-ui-1", `document.querySelector('#results tr[data-request-id="hello-ui-1"][data-status="sent"]') !== null`, wait)
	p.waitJS("p2t results", `document.querySelector('#results tr[data-request-id^="backlog-"]') !== null`, wait)

	// Lookup by request id.
	p.setValue("#lookup-input", "hello-ui-1")
	p.click("#lookup-button")
	p.waitJS("the lookup's result", `document.querySelector('#lookup-out .lookup-result[data-status="sent"]') !== null`, wait)
	out := p.text("#lookup-out")
	for _, want := range []string{"attempts 1", "upstream HTTP 200 code 200", "Dedup record", "accepted"} {
		if !strings.Contains(out, want) {
			t.Errorf("lookup shows %q, want %q in it", out, want)
		}
	}

	// A job that fails (the sandbox answers 503 to both attempts) lands in the DLQ.
	w.fault(t, `{"fail_next":{"path":"/api/push/p2p/","n":2,"status":503}}`)
	w.publish(t, "p2p", "dlq-ui-1", p2pPayload)
	row := `#dlq tr[data-request-id="dlq-ui-1"]`
	p.waitJS("the DLQ entry", fmt.Sprintf(`document.querySelector('%s') !== null`, row), wait)
	if got := p.text(row); !strings.Contains(got, "upstream_unavailable") || !strings.Contains(got, "failed") {
		t.Fatalf("DLQ row %q", got)
	}
	w.fault(t, `{"fail_next":{"path":"/api/push/p2p/","n":0}}`) // clear what is left

	// Without the token a replay is refused, in the page and over HTTP.
	p.click(row + " input.dlq-select")
	p.click("#dlq-replay")
	p.waitJS("the confirmation", `!document.getElementById("confirm").hidden`, wait)
	p.click("#confirm-yes")
	p.waitJS("the refusal", `document.getElementById("dlq-msg").textContent.includes("401")`, wait)
	for _, auth := range []string{"", "Bearer wrong-token-0123456789"} {
		req, _ := http.NewRequest(http.MethodPost, strings.TrimSuffix(w.dashboard, "/")+"/api/dlq/replay", strings.NewReader(`{"seqs":[1]}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("replay with authorization %q: %s, want 401", auth, resp.Status)
		}
	}
	if got := p.text(row); got == "" {
		t.Fatal("a refused replay removed the DLQ entry")
	}

	// With the token it goes through the same code as pushctl dlq replay, and is sent.
	p.setValue("#login-token", adminToken)
	p.click("#login-form button")
	p.waitJS("admin", `document.getElementById("auth-state").textContent === "admin"`, wait)
	p.waitJS("the entry still selected", fmt.Sprintf(`document.querySelector('%s input.dlq-select').checked`, row), wait)
	p.click("#dlq-replay")
	p.waitJS("the confirmation", `!document.getElementById("confirm").hidden`, wait)
	p.click("#confirm-yes")
	p.waitJS("the replay", `document.getElementById("dlq-msg").textContent.includes("replayed 1, failed 0")`, wait)
	p.waitJS("the DLQ entry gone", fmt.Sprintf(`document.querySelector('%s') === null`, row), wait)
	p.waitJS("the replayed job sent", `document.querySelector('#results tr[data-request-id="dlq-ui-1"][data-status="sent"]') !== null`, wait)

	if *screenshot != "" {
		takeScreenshot(t, p, w)
	}
	t.Logf("browser flow took %v", time.Since(start).Round(time.Millisecond))
}

// TestDashboardOff: PUSH_UI=false serves no page and names none in the start log; the
// admin endpoints stay.
func TestDashboardOff(t *testing.T) {
	w := startSandbox(t, map[string]string{"PUSH_UI": "false"})
	if w.dashboard != "" {
		t.Fatalf("the start log names a dashboard: %q", w.dashboard)
	}
	for path, want := range map[string]int{"/": http.StatusNotFound, "/ui/": http.StatusNotFound, "/ui/api/state": http.StatusNotFound, "/healthz": http.StatusOK} {
		resp, err := http.Get(w.admin + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %s, want %d", path, resp.Status, want)
		}
	}
}

// takeScreenshot adds a little of everything, then writes the page as a PNG.
func takeScreenshot(t *testing.T, p *page, w *sandboxWorker) {
	for i := range 60 {
		w.publish(t, "p2t", fmt.Sprintf("order-%d-shipped", i), `{"fromAccount":"shop","topicId":"42","msg":"Your order shipped"}`)
	}
	for i := range 3 {
		w.publish(t, "notify", fmt.Sprintf("promo-%d", i), `{"audience":"all","message":{"type":"text","title":"Sale","body":"Today only"}}`)
	}
	w.publish(t, "p2p", "welcome-u7", p2pPayload)
	w.publish(t, "ucs", "bad-topic-1", `{"fromAccount":"shop","topicId":"x","message":"hi"}`)
	p.waitJS("notify stats", `document.querySelector('#notify tr[data-task]') !== null`, wait)
	p.waitJS("the rejected job in the DLQ", `document.querySelector('#dlq tr[data-request-id="bad-topic-1"]') !== null`, wait)
	p.setValue("#lookup-input", "welcome-u7")
	p.click("#lookup-button")
	p.waitJS("lookup", `document.querySelector('#lookup-out .lookup-result') !== null`, wait)
	ctx, cancel := context.WithTimeout(p.ctx, wait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(*screenshot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", *screenshot, len(png))
}
