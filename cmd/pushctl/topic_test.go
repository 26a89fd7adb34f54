package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/api"
	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/internal/natstest"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream"
	"github.com/pushworker/pushworker/upstream/sandbox"
)

// newAPIHarness is a plain embedded NATS server (no JetStream: the API is request/reply).
func newAPIHarness(t *testing.T) *harness {
	t.Helper()
	s := natstest.Start(t)
	nc, _ := natstest.Connect(t, s)
	return &harness{t: t, url: s.ClientURL(), nc: nc}
}

// fakeReply is the canned answer of one API subject: data, or an error (code set).
type fakeReply struct {
	data         string
	kind, detail string
	code         string
	rawBody      *string // sent as is instead of the JSON envelope
	silent       bool    // never answer
}

// fakeAPI answers <prefix>.api.> like the worker's micro service, recording each request.
type fakeAPI struct {
	mu      sync.Mutex
	replies map[string]fakeReply // by subject relative to <prefix>.api
	reqs    []fakeRequest
}

type fakeRequest struct{ subject, body string }

func newFakeAPI(t *testing.T, nc *nats.Conn, prefix string) *fakeAPI {
	t.Helper()
	f := &fakeAPI{replies: map[string]fakeReply{}}
	base := prefix + ".api."
	sub, err := nc.Subscribe(base+">", func(m *nats.Msg) {
		rel := strings.TrimPrefix(m.Subject, base)
		f.mu.Lock()
		f.reqs = append(f.reqs, fakeRequest{rel, string(m.Data)})
		r, ok := f.replies[rel]
		f.mu.Unlock()
		if r.silent {
			return
		}
		out := nats.NewMsg(m.Reply)
		switch {
		case !ok:
			r = fakeReply{kind: "internal", detail: "no canned reply for " + rel, code: "500"}
			fallthrough
		case r.code != "":
			out.Header.Set("Nats-Service-Error", r.detail)
			out.Header.Set("Nats-Service-Error-Code", r.code)
			b, _ := json.Marshal(map[string]any{"ok": false, "error": map[string]string{"kind": r.kind, "detail": r.detail}})
			out.Data = b
		default:
			out.Data = []byte(`{"ok":true,"data":` + r.data + `}`)
		}
		if r.rawBody != nil {
			out.Data = []byte(*r.rawBody)
		}
		_ = m.RespondMsg(out)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeAPI) set(subject string, r fakeReply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[subject] = r
}

// take returns the requests received so far and forgets them.
func (f *fakeAPI) take() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reqs
	f.reqs = nil
	return r
}

const (
	certKey    = "cert-app-key-5f1e"
	certSecret = "cert-app-secret-9a7c"
	certPEM    = "-----BEGIN CERTIFICATE-----\nQ0VSVElGSUNBVEUtQk9EWQ==\n-----END CERTIFICATE-----\n"
)

// TestAPICommands runs every API subcommand against the fake service: the exact request,
// the table and the --json output.
func TestAPICommands(t *testing.T) {
	h := newAPIHarness(t)
	f := newFakeAPI(t, h.nc, "push")
	certData, _ := json.Marshal(map[string]string{"app_id": "fcm-app", "app_key": certKey, "app_secret": certSecret, "certificate": certPEM, "name": "FCM (development)"})

	for _, c := range []struct {
		name    string
		args    []string
		subject string
		data    string
		request string
		table   string
		json    string // "" : data indented
	}{
		{
			name:    "create",
			args:    []string{"topic", "create", "--account", "张三", "--name", "群聊", "--extra", `{"k":1}`},
			subject: "topic.create",
			data:    `{"topicId":9223372036854775807,"ownerUuid":12,"topicName":"群聊","extra":"{\"k\":1}"}`,
			request: `{"app":"default","account":"张三","topicName":"群聊","extra":"{\"k\":1}"}`,
			table:   "topicId    9223372036854775807\ntopicName  群聊\nownerUuid  12\nextra      {\"k\":1}\n",
			json:    "{\n  \"topicId\": 9223372036854775807,\n  \"ownerUuid\": 12,\n  \"topicName\": \"群聊\",\n  \"extra\": \"{\\\"k\\\":1}\"\n}\n",
		},
		{
			name:    "create without extra",
			args:    []string{"topic", "create", "--app", "shop", "--account", "a", "--name", "n"},
			subject: "topic.create",
			data:    `{"topicId":"7","ownerUuid":"12","topicName":"n"}`,
			request: `{"app":"shop","account":"a","topicName":"n"}`,
			table:   "topicId    7\ntopicName  n\nownerUuid  12\n",
		},
		{
			name:    "update",
			args:    []string{"topic", "update", "--app", "shop", "--account", "a", "--topic", "0042", "--name", "n2", "--owner", "b"},
			subject: "topic.update",
			data:    `{"topicId":42,"ownerUuid":7,"ownerAccount":"b","topicName":"n2","extra":""}`,
			request: `{"app":"shop","account":"a","topicId":"42","topicName":"n2","ownerAccount":"b"}`,
			table:   "topicId       42\ntopicName     n2\nownerAccount  b\nownerUuid     7\nextra         \n",
		},
		{
			name:    "update extra only",
			args:    []string{"topic", "update", "--account", "a", "--topic", "42", "--extra", ""},
			subject: "topic.update",
			data:    `null`,
			request: `{"app":"default","account":"a","topicId":"42","extra":""}`,
			table:   "ok: topic 42\n",
		},
		{
			name:    "delete",
			args:    []string{"topic", "delete", "--topic", "9223372036854775807", "--account", "a"},
			subject: "topic.delete",
			data:    `null`,
			request: `{"app":"default","topicId":"9223372036854775807","account":"a"}`,
			table:   "deleted topic 9223372036854775807\n",
		},
		{
			name:    "delete without account",
			args:    []string{"topic", "delete", "--topic=-5"},
			subject: "topic.delete",
			data:    `null`,
			request: `{"app":"default","topicId":"-5"}`,
			table:   "deleted topic -5\n",
		},
		{
			name:    "members page",
			args:    []string{"topic", "members", "--topic", "5", "--start-uuid", "10"},
			subject: "topic.members",
			data:    `{"count":"2","members":[{"appAccout":"u1","uuid":"11","appId":"1"},{"appAccout":"u2","uuid":"9223372036854775806","appId":"1"}],"isEnd":"false"}`,
			request: `{"app":"default","topicId":"5","startUuid":"10"}`,
			table:   "ACCOUNT  UUID\nu1       11\nu2       9223372036854775806\n2 members\nmore members follow: pushctl topic members --topic 5 --start-uuid 9223372036854775806\n",
		},
		{
			name:    "members all",
			args:    []string{"topic", "members", "--all", "--topic", "5"},
			subject: "topic.members",
			data:    `{"members":[{"appAccout":"owner","uuid":"1","appId":"1"},{"appAccout":"m1","uuid":"2","appId":"1"},{"appAccount":"m2","uuid":3,"appId":"1"}],"count":3,"isEnd":true}`,
			request: `{"app":"default","topicId":"5","all":true}`,
			table:   "ACCOUNT  UUID\nowner    1\nm1       2\nm2       3\n3 members\n",
		},
		{
			name:    "members all cut short",
			args:    []string{"topic", "members", "--all", "--topic", "5"},
			subject: "topic.members",
			data:    `{"members":[{"appAccout":"owner","uuid":"1","appId":"1"}],"count":1,"isEnd":false,"nextStartUuid":"1"}`,
			request: `{"app":"default","topicId":"5","all":true}`,
			table:   "ACCOUNT  UUID\nowner    1\n1 members\nmore members follow: pushctl topic members --topic 5 --start-uuid 1 --all\n",
		},
		{
			name:    "list",
			args:    []string{"topic", "list", "--account", "u1"},
			subject: "topic.list",
			data:    `[9223372036854775807,"42"]`,
			request: `{"app":"default","account":"u1"}`,
			table:   "TOPIC ID\n9223372036854775807\n42\n",
			json:    "[\n  9223372036854775807,\n  \"42\"\n]\n",
		},
		{
			name:    "list empty",
			args:    []string{"topic", "list", "--account", "u9"},
			subject: "topic.list",
			data:    `[]`,
			request: `{"app":"default","account":"u9"}`,
			table:   "account u9 is a member of no topic\n",
		},
		{
			name:    "info",
			args:    []string{"topic", "info", "--topic", "42"},
			subject: "topic.info",
			data:    `{"topicId":"42","topicName":"n","ownerUuid":"7","ownerAccount":"a","memberNum":"3"}`,
			request: `{"app":"default","topicId":"42"}`,
			table:   "topicId       42\ntopicName     n\nownerAccount  a\nownerUuid     7\nmemberNum     3\n",
		},
		{
			name:    "online",
			args:    []string{"topic", "online", "--topic", "42"},
			subject: "topic.online",
			data:    `{"topicId":"42","userCnt":"17"}`,
			request: `{"app":"default","topicId":"42"}`,
			table:   "TOPIC ID  ONLINE USERS\n42        17\n",
		},
		{
			name:    "forbid",
			args:    []string{"topic", "forbid", "--topic", "42", "--user", "u2", "--seconds", "3600"},
			subject: "topic.forbid",
			data:    `""`,
			request: `{"app":"default","topicId":"42","user":"u2","forbidSeconds":3600}`,
			table:   "user u2 may not send to topic 42 for 3600s\n",
			json:    "\"\"\n",
		},
		{
			name:    "forbid lifted",
			args:    []string{"topic", "forbid", "--topic", "42", "--user", "u2", "--seconds", "0"},
			subject: "topic.forbid",
			data:    `""`,
			request: `{"app":"default","topicId":"42","user":"u2","forbidSeconds":0}`,
			table:   "user u2 may send to topic 42 again\n",
			json:    "\"\"\n",
		},
		{
			name:    "certificate",
			args:    []string{"certificate", "--environment", "0", "--provider", "7"},
			subject: "certificate",
			data:    string(certData),
			request: `{"app":"default","environment":0,"provider":7}`,
			table:   "name         FCM (development)\napp_id       fcm-app\napp_key      [hidden, use --json]\napp_secret   [hidden, use --json]\ncertificate  [hidden, use --json]\n",
		},
		{
			name:    "certificate production by default",
			args:    []string{"certificate", "--provider", "1"},
			subject: "certificate",
			data:    `{"name":"APNs"}`,
			request: `{"app":"default","environment":1,"provider":1}`,
			table:   "name  APNs\n",
		},
		{
			name:    "task detail",
			args:    []string{"task", "detail", "--task", "1,2", "--task", "9223372036854775807"},
			subject: "task.detail",
			data: `[{"apns_received":1,"apns_sent":2,"apns_target":3,"fcm_received":10,"fcm_sent":20,"fcm_target":30,"task_id":1},` +
				`{"xiaomi_received":"4","xiaomi_sent":"5","xiaomi_target":"6","task_id":9223372036854775807}]`,
			request: `{"app":"default","task_ids":[1,2,9223372036854775807]}`,
			table: "TASK                 CHANNEL  TARGET  SENT  RECEIVED\n" +
				"1                    apns     3       2     1\n" +
				"1                    fcm      30      20    10\n" +
				"9223372036854775807  xiaomi   6       5     4\n",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.set(c.subject, fakeReply{data: c.data})
			out, errs := h.mustPushctl(exitOK, c.args...)
			if out != c.table {
				t.Errorf("table:\n%s\nwant:\n%s", out, c.table)
			}
			reqs := f.take()
			if len(reqs) != 1 || reqs[0].subject != c.subject || reqs[0].body != c.request {
				t.Fatalf("requests %+v, want one on %s: %s", reqs, c.subject, c.request)
			}
			if c.subject == "task.detail" && !strings.Contains(errs, "no stats for task 2") {
				t.Errorf("stderr %q does not name the missing task", errs)
			}

			out, _ = h.mustPushctl(exitOK, append([]string{"--json"}, c.args...)...)
			want := c.json
			if want == "" {
				want = indent(t, c.data)
			}
			if out != want {
				t.Errorf("--json:\n%s\nwant:\n%s", out, want)
			}
			if reqs := f.take(); len(reqs) != 1 || reqs[0].body != c.request {
				t.Fatalf("--json requests %+v, want %s", reqs, c.request)
			}
		})
	}
}

// indent is data pretty-printed with its keys in the reply's order.
func indent(t *testing.T, data string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(data), "", "  "); err != nil {
		t.Fatal(err)
	}
	return b.String() + "\n"
}

// TestAPICertificateSecrets checks that table output never shows a certificate's secrets
// and --json shows the data as returned.
func TestAPICertificateSecrets(t *testing.T) {
	h := newAPIHarness(t)
	f := newFakeAPI(t, h.nc, "push")
	data, _ := json.Marshal(map[string]string{"app_id": "id", "app_key": certKey, "app_secret": certSecret, "certificate": certPEM, "name": "n"})
	f.set("certificate", fakeReply{data: string(data)})

	out, errs := h.mustPushctl(exitOK, "certificate", "--provider", "7")
	for _, secret := range []string{certKey, certSecret, "BEGIN CERTIFICATE", "Q0VSVElGSUNBVEUtQk9EWQ"} {
		if strings.Contains(out+errs, secret) {
			t.Errorf("table output shows %q:\n%s%s", secret, out, errs)
		}
	}
	if n := strings.Count(out, hiddenValue); n != 3 {
		t.Errorf("%d hidden values, want 3:\n%s", n, out)
	}

	out, _ = h.mustPushctl(exitOK, "certificate", "--provider", "7", "--json")
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if got["app_key"] != certKey || got["app_secret"] != certSecret || got["certificate"] != certPEM {
		t.Fatalf("--json does not show the data as returned: %v", got)
	}
}

// TestAPIErrors checks error replies, no responders, timeouts and usage errors.
func TestAPIErrors(t *testing.T) {
	h := newAPIHarness(t)
	f := newFakeAPI(t, h.nc, "push")

	t.Run("error reply", func(t *testing.T) {
		f.set("topic.info", fakeReply{kind: "upstream_rejected", detail: "MIMC answered 400: topic not exist", code: "422"})
		for _, json := range []bool{false, true} {
			args := []string{"topic", "info", "--topic", "42"}
			if json {
				args = append(args, "--json")
			}
			out, errs := h.mustPushctl(exitError, args...)
			if out != "" || errs != "error: upstream_rejected: MIMC answered 400: topic not exist\n" {
				t.Errorf("json %v: stdout %q stderr %q", json, out, errs)
			}
		}
		f.take()
	})

	t.Run("error headers only", func(t *testing.T) {
		empty := ""
		f.set("topic.online", fakeReply{kind: "x", detail: "circuit breaker open", code: "503", rawBody: &empty})
		_, errs := h.mustPushctl(exitError, "topic", "online", "--topic", "1")
		if errs != "error: service error 503: circuit breaker open\n" {
			t.Errorf("stderr %q", errs)
		}
		f.take()
	})

	t.Run("malformed reply", func(t *testing.T) {
		body := "not json"
		f.set("topic.list", fakeReply{data: "null", rawBody: &body})
		_, errs := h.mustPushctl(exitError, "topic", "list", "--account", "a")
		if !strings.Contains(errs, "the reply on push.api.topic.list is not valid JSON") {
			t.Errorf("stderr %q", errs)
		}
		f.take()
	})

	t.Run("no responders", func(t *testing.T) {
		for _, args := range [][]string{
			{"--prefix", "acme", "topic", "info", "--topic", "1"},
			{"certificate", "--prefix", "acme", "--provider", "3"},
			{"--prefix", "acme", "task", "detail", "--task", "5"},
		} {
			out, errs := h.mustPushctl(exitError, args...)
			subject := "acme.api." + map[string]string{"topic": "topic.info", "certificate": "certificate", "task": "task.detail"}[args[2]]
			if args[0] == "certificate" {
				subject = "acme.api.certificate"
			}
			if out != "" || errs != "pushctl: no pushworker is serving "+subject+": is the worker running?\n" {
				t.Errorf("%v: stdout %q stderr %q", args, out, errs)
			}
		}
	})

	t.Run("prefix", func(t *testing.T) {
		g := newFakeAPI(t, h.nc, "acme")
		g.set("topic.info", fakeReply{data: `{"topicId":"1"}`})
		h.mustPushctl(exitOK, "--prefix", "acme", "topic", "info", "--topic", "1")
		if reqs := g.take(); len(reqs) != 1 || reqs[0].subject != "topic.info" {
			t.Fatalf("requests %+v", reqs)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		f.set("topic.info", fakeReply{silent: true})
		start := time.Now()
		_, errs := h.mustPushctl(exitError, "topic", "info", "--topic", "1", "--timeout", "200ms")
		if !strings.Contains(errs, "no answer on push.api.topic.info within 200ms") || time.Since(start) > 5*time.Second {
			t.Errorf("stderr %q after %s", errs, time.Since(start))
		}
		f.take()
	})

	t.Run("usage", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"topic"}, "members"},
			{[]string{"topic", "rename"}, `unknown topic command "rename"`},
			{[]string{"task"}, "detail"},
			{[]string{"topic", "create", "--account", "a"}, "--name is required"},
			{[]string{"topic", "create", "--name", "n", "--account", ""}, "--account is required"},
			{[]string{"topic", "update", "--account", "a", "--topic", "1"}, "at least one of --name, --owner, --extra"},
			{[]string{"topic", "update", "--account", "a", "--topic", "1", "--owner", ""}, "--owner must not be empty"},
			{[]string{"topic", "delete"}, "--topic is required"},
			{[]string{"topic", "info", "--topic", "9223372036854775808"}, "not a 64-bit integer"},
			{[]string{"topic", "online", "--topic", "abc"}, "not a 64-bit integer"},
			{[]string{"topic", "members", "--topic", "1", "--start-uuid", "-1"}, "must not be negative"},
			{[]string{"topic", "list"}, "--account is required"},
			{[]string{"topic", "forbid", "--topic", "1", "--user", "u"}, "--seconds is required"},
			{[]string{"topic", "forbid", "--topic", "1", "--user", "u", "--seconds", "315360001"}, "between 0 and 315360000"},
			{[]string{"topic", "forbid", "--topic", "1", "--seconds", "1"}, "--user is required"},
			{[]string{"topic", "info", "42"}, "takes no arguments"},
			{[]string{"topic", "info", "--topic", "1", "--app", ""}, "--app must not be empty"},
			{[]string{"topic", "info", "--topic", "1", "--timeout", "0s"}, "--timeout must be positive"},
			{[]string{"topic", "info", "--bogus"}, "flag provided but not defined"},
			{[]string{"certificate"}, "--provider is required"},
			{[]string{"certificate", "--provider", "8"}, "between 1 and 7"},
			{[]string{"certificate", "--provider", "1", "--environment", "2"}, "0 (development) or 1 (production)"},
			{[]string{"task", "detail"}, "--task is required"},
			{[]string{"task", "detail", "--task", "1,x"}, "not a 64-bit integer"},
			{[]string{"task", "summary"}, `unknown task command "summary"`},
		} {
			code, out, errs := h.pushctl(c.args...)
			if code != exitUsage || !strings.Contains(out+errs, c.want) {
				t.Errorf("%v: exit %d (want %d), output %q lacks %q", c.args, code, exitUsage, out+errs, c.want)
			}
		}
		if reqs := f.take(); len(reqs) != 0 {
			t.Fatalf("usage errors sent requests: %+v", reqs)
		}
	})

	t.Run("help", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"help"}, "certificate"},
			{[]string{"help", "topic"}, "forbid"},
			{[]string{"help", "certificate"}, "--provider"},
			{[]string{"help", "task"}, "detail"},
			{[]string{"topic", "forbid", "-h"}, "--seconds"},
			{[]string{"topic", "members", "--help"}, "--start-uuid"},
		} {
			code, out, errs := h.pushctl(c.args...)
			if code != exitOK || !strings.Contains(out+errs, c.want) {
				t.Errorf("%v: exit %d, output %q lacks %q", c.args, code, out+errs, c.want)
			}
		}
	})
}

// TestAPIForbidNATSUser checks that topic forbid's --user is the member while the NATS user
// is still given before the command.
func TestAPIForbidNATSUser(t *testing.T) {
	s := natstest.Start(t, func(o *server.Options) { o.Username, o.Password = "ops", "pw" })
	nc, _ := natstest.Connect(t, s, nats.UserInfo("ops", "pw"))
	f := newFakeAPI(t, nc, "push")
	f.set("topic.forbid", fakeReply{data: `""`})
	h := &harness{t: t, url: s.ClientURL()}
	h.mustPushctl(exitOK, "--user", "ops", "--password", "pw", "topic", "forbid", "--topic", "1", "--user", "member", "--seconds", "60")
	if reqs := f.take(); len(reqs) != 1 || reqs[0].body != `{"app":"default","topicId":"1","user":"member","forbidSeconds":60}` {
		t.Fatalf("requests %+v", reqs)
	}
	if code, _, errs := h.pushctl("topic", "forbid", "--topic", "1", "--user", "member", "--seconds", "60"); code != exitError || !strings.Contains(errs, "cannot reach NATS") {
		t.Fatalf("without the NATS user: exit %d, %q", code, errs)
	}
}

// TestTopicAgainstSandbox runs topic create → members --all → delete through the CLI
// against the worker's real API service and the sandbox upstream.
func TestTopicAgainstSandbox(t *testing.T) {
	sb := sandbox.New(sandbox.DefaultConfig())
	base, err := sb.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	t.Setenv("PUSH_MIMC_URL", base)
	t.Setenv("PUSH_MIMC_APP_ID", sandbox.DefaultMIMCAppID)
	t.Setenv("PUSH_MIMC_APP_KEY", sandbox.DefaultMIMCAppKey)
	t.Setenv("PUSH_MIMC_APP_SECRET", sandbox.DefaultMIMCAppSecret)
	t.Setenv("PUSH_NOTIFY_URL", base)
	t.Setenv("PUSH_NOTIFY_APP_ID", sandbox.DefaultNotifyAppID)
	t.Setenv("PUSH_NOTIFY_ACCESS_TOKEN", sandbox.DefaultNotifyToken)
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}

	h := newAPIHarness(t)
	client := &upstream.Client{HTTP: upstream.NewHTTPClient(5*time.Second, 16), MIMCURL: cfg.MIMCURL, NotifyURL: cfg.NotifyURL}
	svc, err := api.Start(h.nc, api.Options{Config: cfg, Client: client, Breakers: upstream.NewBreakers(upstream.BreakerSettings{}), Logger: zerolog.Nop(), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })

	out, _ := h.mustPushctl(exitOK, "--json", "topic", "create", "--account", "张三", "--name", "群聊", "--extra", "x")
	var created struct {
		TopicID jobs.TopicID `json:"topicId"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.TopicID == 0 {
		t.Fatalf("create: %v\n%s", err, out)
	}
	id := int64(created.TopicID)
	if info, ok := sb.Topic(id); !ok || info.Owner != "张三" || info.Name != "群聊" || info.Extra != "x" {
		t.Fatalf("sandbox topic %+v (found %v)", info, ok)
	}
	for i := 0; i < 149; i++ { // two pages of at most 100
		sb.AddMember(id, fmt.Sprintf("m%03d", i))
	}

	ids := strconv.FormatInt(id, 10)
	out, _ = h.mustPushctl(exitOK, "topic", "members", "--topic", ids, "--all")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 152 || !strings.HasPrefix(lines[0], "ACCOUNT") || lines[151] != "150 members" {
		t.Fatalf("members --all: %d lines, first %q, last %q", len(lines), lines[0], lines[len(lines)-1])
	}
	for _, want := range []string{"张三", "m000", "m148"} {
		if !strings.Contains(out, want+" ") {
			t.Errorf("members --all lacks %s", want)
		}
	}

	out, _ = h.mustPushctl(exitOK, "topic", "delete", "--topic", ids, "--account", "张三")
	if out != "deleted topic "+ids+"\n" {
		t.Errorf("delete: %q", out)
	}
	if _, ok := sb.Topic(id); ok {
		t.Fatal("the topic was not deleted")
	}
	_, errs := h.mustPushctl(exitError, "topic", "info", "--topic", ids)
	if !strings.HasPrefix(errs, "error: upstream_rejected: ") {
		t.Errorf("info after delete: %q", errs)
	}
}
