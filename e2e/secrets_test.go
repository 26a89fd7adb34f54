package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/upstream/sandbox"
)

// secretSet is a configuration's recognisable secrets.
type secretSet struct {
	mimcKey, mimcSecret, notifyToken, shopKey, shopSecret, shopToken, natsPass string
}

func (s secretSet) all() []string {
	return []string{s.mimcKey, s.mimcSecret, s.notifyToken, s.shopKey, s.shopSecret, s.shopToken, s.natsPass}
}

var plainSecrets = secretSet{
	mimcKey: "mimcKEY-e2e-4f1c", mimcSecret: "mimcSECRET-e2e-9a9a", notifyToken: "notifyTOKEN-e2e-77b2",
	shopKey: "shopKEY-e2e-0a0a", shopSecret: "shopSECRET-e2e-1b1b", shopToken: "shopTOKEN-e2e-2c2c", natsPass: "natsPASS-e2e-3d3d",
}

// secretForms are the ways a secret can appear in text: as is, JSON-escaped (with and
// without HTML escaping), and its recognisable head before a character JSON may escape.
func secretForms(s string) []string {
	forms := []string{s}
	b, _ := json.Marshal(s)
	forms = append(forms, string(b[1:len(b)-1]))
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	q := strings.TrimSpace(buf.String())
	forms = append(forms, q[1:len(q)-1])
	if i := strings.IndexAny(s, `"<&>\`); i >= 8 {
		forms = append(forms, s[:i])
	}
	return forms
}

// findSecret reports where in text one of the secrets shows, or "".
func findSecret(secrets []string, text []byte) string {
	for _, s := range secrets {
		for _, f := range secretForms(s) {
			if i := bytes.Index(text, []byte(f)); i >= 0 {
				lo, hi := max(0, i-160), min(len(text), i+len(f)+80)
				return fmt.Sprintf("%q at …%s…", f, text[lo:hi])
			}
		}
	}
	return ""
}

func jsonString(s string) string { b, _ := json.Marshal(s); return string(b) }

// secretsRun is a worker configured with a secretSet: two apps (default from the
// variables, shop from PUSH_APPS_FILE), NATS with a password, debug logs.
type secretsRun struct {
	t    *testing.T
	sec  secretSet
	sb   *sandbox.Server
	js   jetstream.JetStream
	w    *workerProc
	res  *watcher
	dlq  *watcher
	want map[string]string // request id -> status
	dlqs int               // DLQ entries expected
}

func startSecretsRun(t *testing.T, sec secretSet) *secretsRun {
	t.Helper()
	cfg := sandbox.Config{
		MIMCApps: []sandbox.MIMCApp{
			{AppID: "2882303761599", AppKey: sec.mimcKey, AppSecret: sec.mimcSecret},
			{AppID: "2882303761600", AppKey: sec.shopKey, AppSecret: sec.shopSecret},
		},
		NotifyApps: []sandbox.NotifyApp{{AppID: "notify-e2e", AccessToken: sec.notifyToken}, {AppID: "shop-notify", AccessToken: sec.shopToken}},
		Rates:      map[string]float64{"p2p": 1000, "p2t": 1000, "ucs": 1000},
	}
	n := startNATS(t, func(o *server.Options) { o.Username, o.Password = "e2e", sec.natsPass })
	sb := startSandbox(t, cfg)
	_, js := connect(t, fmt.Sprintf("nats://e2e:%s@127.0.0.1:%d", sec.natsPass, n.opts.Port))
	appsFile := filepath.Join(t.TempDir(), "apps.json")
	apps := `{"apps":{"shop":{"mimc":{"app_id":"2882303761600","app_key":` + jsonString(sec.shopKey) + `,"app_secret":` + jsonString(sec.shopSecret) + `},` +
		`"notify":{"app_id":"shop-notify","access_token":` + jsonString(sec.shopToken) + `}}}}`
	if err := os.WriteFile(appsFile, []byte(apps), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, map[string]string{
		"PUSH_NATS_URL":              n.url(),
		"PUSH_NATS_USER":             "e2e",
		"PUSH_NATS_PASSWORD":         sec.natsPass,
		"PUSH_MIMC_URL":              sb.URL(),
		"PUSH_NOTIFY_URL":            sb.URL(),
		"PUSH_MIMC_APP_ID":           "2882303761599",
		"PUSH_MIMC_APP_KEY":          sec.mimcKey,
		"PUSH_MIMC_APP_SECRET":       sec.mimcSecret,
		"PUSH_NOTIFY_APP_ID":         "notify-e2e",
		"PUSH_NOTIFY_ACCESS_TOKEN":   sec.notifyToken,
		"PUSH_APPS_FILE":             appsFile,
		"PUSH_LOG_LEVEL":             "debug",
		"PUSH_MAX_ATTEMPTS":          "2",
		"PUSH_RETRY_INITIAL":         "50ms",
		"PUSH_RETRY_MAX":             "100ms",
		"PUSH_NOTIFY_STATS_INTERVAL": "200ms",
	})
	return &secretsRun{t: t, sec: sec, sb: sb, js: js, w: w,
		res: watchStream(t, js, "PUSH_RESULTS"), dlq: watchStream(t, js, "PUSH_DLQ"), want: map[string]string{}}
}

// pub publishes a job (its Nats-Msg-Id is id) and expects a result with status.
func (r *secretsRun) pub(typ, id, status, data string) {
	r.t.Helper()
	publish(r.t, r.js, "push.jobs."+typ, []byte(data), id)
	r.want[id] = status
	if status == "rejected" || status == "failed" {
		r.dlqs++
	}
}

// check waits for every result, stops the worker and looks for the secrets everywhere.
func (r *secretsRun) check() {
	t := r.t
	t.Helper()
	for id, status := range r.want {
		if got := r.res.waitResult(id, 20*time.Second); got.Status != status {
			t.Fatalf("%s: %s, want %s", id, got, status)
		}
	}
	eventually(t, 10*time.Second, fmt.Sprintf("%d DLQ entries", r.dlqs), func() bool { return len(r.dlq.all()) >= r.dlqs })
	r.w.stop(15 * time.Second) // so that its whole output is there

	secrets := r.sec.all()
	if where := findSecret(secrets, []byte(r.w.output())); where != "" {
		t.Errorf("secret in the worker's output: %s", where)
	}
	for _, m := range r.res.all() {
		if where := findSecret(secrets, m.Data); where != "" {
			t.Errorf("secret in a result on %s: %s", m.Subject, where)
		}
		for k, v := range m.Header {
			if where := findSecret(secrets, []byte(k+": "+strings.Join(v, ","))); where != "" {
				t.Errorf("secret in a result header: %s", where)
			}
		}
	}
	for _, e := range r.dlq.dlq() {
		if where := findSecret(secrets, e.Raw); where != "" {
			t.Errorf("secret in a DLQ entry on %s: %s", e.MsgSubject, where)
		}
		if where := findSecret(secrets, e.Data); where != "" {
			t.Errorf("secret in the (base64) data of a DLQ entry on %s: %s", e.MsgSubject, where)
		}
	}
	// The search itself can fail: it finds the credentials the upstream received.
	for _, q := range r.sb.Requests() {
		if strings.HasPrefix(q.Path, "/api/push/") && findSecret(secrets, q.Body) == "" {
			t.Fatalf("findSecret misses the credentials of an upstream request: %s", q.Body)
		}
	}
}

// TestSecretsNeverLeave runs a mix of jobs (sent for two apps and both upstreams,
// retried, rejected upstream with the secret echoed, failed, and rejected for carrying the
// very secrets of the configuration) at debug log level and checks that no secret shows in
// the worker's output, any result or any DLQ entry (§5, §7).
func TestSecretsNeverLeave(t *testing.T) {
	t.Parallel()
	r := startSecretsRun(t, plainSecrets)
	sec, sb := r.sec, r.sb
	sb.FailNext(p2pPath, 1, 500, `{"code":500,"message":"oops","data":null}`)
	r.pub("p2p", "s-ok", "sent", `{"payload":{"fromAccount":"a","toAccount":"b","msg":"s-ok"}}`)
	r.pub("p2t", "s-shop", "sent", `{"app":"shop","payload":{"fromAccount":"a","topicId":7,"msg":"s-shop"}}`)
	r.pub("notify", "s-notify", "sent", `{"payload":{"audience":"all","message":{"body":"b"}}}`)
	r.pub("notify", "s-notify-shop", "sent", `{"app":"shop","payload":{"audience":{"alias":["x"]},"message":{"body":"b"}}}`)
	// A valid job whose text happens to hold a secret.
	r.pub("p2p", "s-in-msg", "sent", `{"payload":{"fromAccount":"a","toAccount":"b","msg":`+jsonString("my key is "+sec.mimcKey)+`}}`)
	// Credentials inside jobs: the configured secrets themselves.
	r.pub("p2p", "s-cred-secret", "rejected", `{"payload":{"fromAccount":"a","toAccount":"b","msg":"m","appSecret":`+jsonString(sec.mimcSecret)+`}}`)
	r.pub("ucs", "s-cred-key", "rejected", `{"app":"shop","payload":{"fromAccount":"a","topicId":1,"message":"m","appKey":`+jsonString(sec.shopKey)+`}}`)
	r.pub("notify", "s-cred-token", "rejected", `{"payload":{"audience":"all","message":{"body":"b"},"access-token":`+jsonString(sec.notifyToken)+`}}`)
	r.pub("notify", "s-cred-token2", "rejected", `{"app":"shop","payload":{"audience":"all","message":{"body":"b"},"token":`+jsonString(sec.shopToken)+`}}`)
	// An upstream that echoes a secret in its rejection.
	sb.FailNext("/api/push/p2p/more", 1, 400, `{"code":400,"message":"bad request from appKey `+sec.mimcKey+`","data":null}`)
	r.pub("p2p_more", "s-echo", "rejected", `{"payload":{"fromAccount":"a","toAccounts":["b"],"msg":"m"}}`)
	// Failed after every attempt, with a secret in the upstream's answer.
	sb.FailNext("/api/push/ucs/multiMsgPush", 10, 502, `{"code":502,"message":"upstream of `+sec.shopSecret+` down","data":null}`)
	r.pub("ucs_multi_msg", "s-failed", "failed", `{"app":"shop","payload":{"fromAccount":"a","topicId":3,"messages":["x"]}}`)
	for _, id := range []string{"s-cred-secret", "s-cred-key", "s-cred-token", "s-cred-token2"} {
		if k := r.res.waitResult(id, 20*time.Second).kind(); k != "credentials_in_job" {
			t.Fatalf("%s: kind %s, want credentials_in_job", id, k)
		}
	}
	// Let the notify stats poller run too.
	eventually(t, 10*time.Second, "a notify task detail poll", func() bool { return sb.Stats().Paths["/push/task/detail"] > 0 })
	r.check()
}

// TestSecretsInRejectedJobText: a rejected job whose data holds a configured secret outside
// a credential field (a producer's leak); the README promises the DLQ never holds a secret.
func TestSecretsInRejectedJobText(t *testing.T) {
	t.Parallel()
	r := startSecretsRun(t, plainSecrets)
	r.pub("p2p", "s-invalid", "rejected", `{"payload":{"fromAccount":"a","msg":`+jsonString("token "+r.sec.shopToken)+`}}`)
	r.pub("p2p", "s-notjson", "rejected", "not json "+r.sec.mimcSecret)
	r.check()
}

// TestSecretsThatJSONEscapes: a secret holding characters JSON escapes (" \ < > &) echoed
// by the upstream must not reach a result or DLQ entry in its escaped form either.
func TestSecretsThatJSONEscapes(t *testing.T) {
	t.Parallel()
	sec := plainSecrets
	sec.mimcSecret = `mimcSECRET-e2e-"q<&>\-9a`
	r := startSecretsRun(t, sec)
	r.pub("p2p", "s-ok", "sent", `{"payload":{"fromAccount":"a","toAccount":"b","msg":"s-ok"}}`)
	r.pub("p2p", "s-cred-secret", "rejected", `{"payload":{"fromAccount":"a","toAccount":"b","msg":"m","appSecret":`+jsonString(sec.mimcSecret)+`}}`)
	r.sb.FailNext("/api/push/p2t/more", 1, 400, `{"code":400,"message":`+jsonString("bad appSecret "+sec.mimcSecret)+`,"data":null}`)
	r.pub("p2t_more", "s-echo-escaped", "rejected", `{"payload":{"fromAccount":"a","topicIds":[1],"msg":"m"}}`)
	r.check()
}
