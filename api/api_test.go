package api

import (
	"github.com/valyala/fasthttp"

	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/internal/natstest"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream"
)

const (
	testAppID     = "2882303761517"
	testAppKey    = "key-5601761157889"
	testAppSecret = "secret-Xy7+/Qz=="
	testNAppID    = "notify-app-1"
	testToken     = "tok-0123456789abcdef"
	otherSecret   = "other-app-secret-42"
)

var testSecrets = []string{testAppKey, testAppSecret, testToken, otherSecret}

// lockedBuffer collects the service's log lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type harnessOpts struct {
	prefix     string
	maxPayload int32
	timeout    time.Duration
	noNotify   bool
	version    string
	// baseURL, mimc and notify point the default app at another upstream (the sandbox)
	// instead of the fake.
	baseURL string
	mimc    *config.MIMCCreds
	notify  *config.NotifyCreds
}

type harness struct {
	t        *testing.T
	nc       *nats.Conn
	fake     *fakeUpstream
	rec      *recorder
	client   *upstream.Client
	breakers *upstream.Breakers
	svc      micro.Service
	prefix   string
	logs     *lockedBuffer
	secrets  []string
	opts     Options // what the service was started with
}

func newHarness(t *testing.T, opts ...func(*harnessOpts)) *harness {
	t.Helper()
	o := harnessOpts{prefix: "push", timeout: 2 * time.Second, version: "1.2.3"}
	for _, f := range opts {
		f(&o)
	}
	ns := natstest.Start(t, func(so *server.Options) { so.MaxPayload = o.maxPayload })
	nc, _ := natstest.Connect(t, ns)

	fake, srv := newFakeUpstream(t, testAppID, testAppKey, testAppSecret, testNAppID, testToken)
	hc := upstream.NewHTTPClient(o.timeout, 16)
	rec := &recorder{next: fasthttp.DefaultTransport}
	hc.Transport = rec
	base := srv.URL
	mimc := &config.MIMCCreds{AppID: testAppID, AppKey: config.NewSecret(testAppKey), AppSecret: config.NewSecret(testAppSecret)}
	notify := &config.NotifyCreds{AppID: testNAppID, AccessToken: config.NewSecret(testToken)}
	secrets := testSecrets
	if o.baseURL != "" {
		base, mimc, notify = o.baseURL, o.mimc, o.notify
		secrets = append([]string{mimc.AppKey.Reveal(), mimc.AppSecret.Reveal(), notify.AccessToken.Reveal()}, testSecrets...)
	}
	client := &upstream.Client{HTTP: hc, MIMCURL: base, NotifyURL: base}
	if o.noNotify {
		client.NotifyURL = ""
	}
	cfg := config.Config{
		SubjectPrefix: o.prefix,
		HTTPTimeout:   o.timeout,
		Apps: map[string]config.App{
			"default":    {Name: "default", MIMC: mimc, Notify: notify},
			"notifyonly": {Name: "notifyonly", Notify: &config.NotifyCreds{AppID: "x", AccessToken: config.NewSecret(otherSecret)}},
			"mimconly":   {Name: "mimconly", MIMC: &config.MIMCCreds{AppID: "1", AppKey: config.NewSecret(otherSecret), AppSecret: config.NewSecret(otherSecret)}},
			"halfnotify": {Name: "halfnotify", Notify: &config.NotifyCreds{AppID: "x"}}, // no access token
		},
	}
	logs := &lockedBuffer{}
	h := &harness{t: t, nc: nc, fake: fake, rec: rec, client: client, prefix: o.prefix, logs: logs, secrets: secrets,
		breakers: upstream.NewBreakers(upstream.BreakerSettings{TripAfter: 3, OpenFor: time.Minute, ProbeEvery: time.Minute})}
	h.opts = Options{Config: cfg, Client: client, Breakers: h.breakers, Logger: zerolog.New(logs).Level(zerolog.DebugLevel), Version: o.version}
	svc, err := Start(nc, h.opts)
	if err != nil {
		t.Fatal(err)
	}
	h.svc = svc
	t.Cleanup(func() {
		_ = h.svc.Stop()
		for _, s := range secrets {
			if strings.Contains(logs.String(), s) {
				t.Errorf("a secret reached the log:\n%s", logs.String())
			}
		}
	})
	return h
}

// testReply is the decoded reply of the API.
type testReply struct {
	OK    bool            `json:"ok"`
	Data  json.RawMessage `json:"data"`
	Error *jobs.Error     `json:"error"`
	msg   *nats.Msg
}

// ask sends a request (a JSON string or a value to marshal) to <prefix>.api.<subject>
// and checks that no secret is in the reply.
func (h *harness) ask(subject string, req any) testReply {
	h.t.Helper()
	var data []byte
	switch v := req.(type) {
	case string:
		data = []byte(v)
	default:
		data, _ = json.Marshal(v)
	}
	msg, err := h.nc.Request(h.prefix+".api."+subject, data, 5*time.Second)
	if err != nil {
		h.t.Fatalf("%s: %v", subject, err)
	}
	for _, s := range h.secrets {
		if strings.Contains(string(msg.Data), s) || strings.Contains(fmt.Sprint(msg.Header), s) {
			h.t.Fatalf("%s: a secret is in the reply: %s %v", subject, msg.Data, msg.Header)
		}
	}
	var r testReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		h.t.Fatalf("%s: reply is not JSON: %q", subject, msg.Data)
	}
	r.msg = msg
	return r
}

func (r testReply) code() string { return r.msg.Header.Get(micro.ErrorCodeHeader) }

func mustOK(t *testing.T, subject string, r testReply) {
	t.Helper()
	if !r.OK || r.Error != nil || r.code() != "" {
		t.Fatalf("%s: want ok, got %s (headers %v)", subject, r.msg.Data, r.msg.Header)
	}
}

func mustFail(t *testing.T, subject string, r testReply, code string, kind jobs.ErrorKind, detail string) {
	t.Helper()
	if r.OK || r.Error == nil {
		t.Fatalf("%s: want an error, got %s", subject, r.msg.Data)
	}
	if r.Error.Kind != kind || !strings.Contains(r.Error.Detail, detail) {
		t.Fatalf("%s: want %s with detail containing %q, got %s: %q", subject, kind, detail, r.Error.Kind, r.Error.Detail)
	}
	if got := r.code(); got != code {
		t.Fatalf("%s: want %s %q, got %q", subject, micro.ErrorCodeHeader, code, got)
	}
	if r.msg.Header.Get(micro.ErrorHeader) == "" {
		t.Fatalf("%s: %s header not set", subject, micro.ErrorHeader)
	}
	if len(r.Data) != 0 {
		t.Fatalf("%s: an error reply carries data: %s", subject, r.Data)
	}
}

func headerKeys(h map[string][]string) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var (
	mimcKeys   = []string{"Content-Type", "appId", "appKey", "appSecret"}
	notifyKeys = []string{"Content-Type", "access-token", "app_id"}
)

func TestEndpointsSendTheDocumentedUpstreamRequests(t *testing.T) {
	h := newHarness(t)
	topic := h.fake.addTopic("general", "alice", "bob")
	doomed := h.fake.addTopic("doomed", "alice")
	if topic < 1<<53 {
		t.Fatalf("topic ids should exceed 2^53 to catch float64 round trips, got %d", topic)
	}
	T := strconv.FormatInt(topic, 10)

	cases := []struct {
		subject string
		req     string
		method  string
		path    string
		query   string
		extra   map[string]string // call-specific headers (besides the credentials)
		body    string
		data    func(t *testing.T, data json.RawMessage)
	}{
		{subject: "topic.create", req: `{"account":"alice","topicName":"news","extra":"e1"}`,
			method: "POST", path: "/api/uctopic", extra: map[string]string{"appAccount": "alice"}, body: `{"topicName":"news","extra":"e1"}`,
			data: func(t *testing.T, d json.RawMessage) {
				var v struct {
					TopicID   json.Number `json:"topicId"`
					TopicName string      `json:"topicName"`
				}
				if err := json.Unmarshal(d, &v); err != nil || v.TopicName != "news" || len(v.TopicID.String()) < 16 {
					t.Fatalf("create data %s", d)
				}
			}},
		{subject: "topic.create", req: `{"app":"default","account":"alice","topicName":"bare"}`,
			method: "POST", path: "/api/uctopic", extra: map[string]string{"appAccount": "alice"}, body: `{"topicName":"bare"}`},
		{subject: "topic.update", req: `{"account":"alice","topicId":"` + T + `","topicName":"renamed","extra":"x"}`,
			method: "POST", path: "/api/uctopic/update", extra: map[string]string{"appAccount": "alice"},
			body: `{"topicId":` + T + `,"topicName":"renamed","extra":"x"}`,
			data: func(t *testing.T, d json.RawMessage) {
				if !strings.Contains(string(d), `"topicId":`+T) || !strings.Contains(string(d), `"topicName":"renamed"`) {
					t.Fatalf("update data %s", d)
				}
			}},
		{subject: "topic.update", req: `{"account":"alice","topicId":` + T + `,"ownerAccount":"bob"}`,
			method: "POST", path: "/api/uctopic/update", extra: map[string]string{"appAccount": "alice"},
			body: `{"topicId":` + T + `,"ownerAccount":"bob"}`},
		{subject: "topic.members", req: `{"topicId":` + T + `}`,
			method: "GET", path: "/api/uctopic/userlist", extra: map[string]string{"topicId": T, "startUuid": "0"},
			data: func(t *testing.T, d json.RawMessage) {
				var v struct {
					Members []map[string]string `json:"members"`
					IsEnd   string              `json:"isEnd"`
				}
				if err := json.Unmarshal(d, &v); err != nil || len(v.Members) != 2 || v.IsEnd != "true" {
					t.Fatalf("members data %s", d)
				}
			}},
		{subject: "topic.members", req: `{"topicId":` + T + `,"startUuid":"17"}`,
			method: "GET", path: "/api/uctopic/userlist", extra: map[string]string{"topicId": T, "startUuid": "17"}},
		{subject: "topic.list", req: `{"account":"bob"}`,
			method: "GET", path: "/api/uctopic/topics", extra: map[string]string{"appAccount": "bob"},
			data: func(t *testing.T, d json.RawMessage) {
				if string(d) != "["+T+"]" {
					t.Fatalf("list data %s, want [%s] with every digit", d, T)
				}
			}},
		{subject: "topic.info", req: `{"topicId":"` + T + `"}`,
			method: "GET", path: "/api/uctopic/topic", extra: map[string]string{"topicId": T},
			data: func(t *testing.T, d json.RawMessage) {
				if !strings.Contains(string(d), `"topicId":"`+T+`"`) || !strings.Contains(string(d), `"memberNum":"2"`) {
					t.Fatalf("info data %s", d)
				}
			}},
		{subject: "topic.online", req: `{"topicId":` + T + `}`,
			method: "GET", path: "/api/uctopic/onlineinfo", extra: map[string]string{"topicId": T},
			data: func(t *testing.T, d json.RawMessage) {
				if !strings.Contains(string(d), `"userCnt":"0"`) {
					t.Fatalf("online data %s", d)
				}
			}},
		{subject: "topic.forbid", req: `{"topicId":` + T + `,"user":"bob","forbidSeconds":600}`,
			method: "POST", path: "/api/uctopic/forbidsendmsg", body: `{"topicId":"` + T + `","user":"bob","forbidSeconds":600}`,
			data: func(t *testing.T, d json.RawMessage) {
				if string(d) != `""` {
					t.Fatalf("forbid data %s", d)
				}
			}},
		{subject: "topic.forbid", req: `{"topicId":` + T + `,"user":"bob","forbidSeconds":0}`,
			method: "POST", path: "/api/uctopic/forbidsendmsg", body: `{"topicId":"` + T + `","user":"bob","forbidSeconds":0}`},
		{subject: "topic.delete", req: `{"topicId":` + strconv.FormatInt(doomed, 10) + `,"account":"alice"}`,
			method: "DELETE", path: "/api/uctopic", extra: map[string]string{"topicId": strconv.FormatInt(doomed, 10), "appAccount": "alice"},
			data: func(t *testing.T, d json.RawMessage) {
				if string(d) != "null" {
					t.Fatalf("delete data %s", d)
				}
			}},
		{subject: "topic.delete", req: `{"topicId":"` + T + `"}`,
			method: "DELETE", path: "/api/uctopic", extra: map[string]string{"topicId": T}},
		{subject: "certificate", req: `{"provider":2}`,
			method: "GET", path: "/push/certificate", query: "environment=1&provider=2",
			data: func(t *testing.T, d json.RawMessage) {
				if !strings.Contains(string(d), `"certificate":"CERT-env1"`) {
					t.Fatalf("certificate data %s", d)
				}
			}},
		{subject: "certificate", req: `{"environment":0,"provider":7,"app":"default"}`,
			method: "GET", path: "/push/certificate", query: "environment=0&provider=7"},
		{subject: "task.detail", req: `{"task_ids":[101,"102",9007199254740993]}`,
			method: "POST", path: "/push/task/detail", body: `{"list":[101,102,9007199254740993]}`,
			data: func(t *testing.T, d json.RawMessage) {
				if !strings.Contains(string(d), `"task_id":9007199254740993`) || !strings.Contains(string(d), `"xiaomi_received":7`) {
					t.Fatalf("task detail data %s", d)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.subject, func(t *testing.T) {
			before := h.rec.count()
			r := h.ask(tc.subject, tc.req)
			mustOK(t, tc.subject, r)
			if n := h.rec.count() - before; n != 1 {
				t.Fatalf("%d upstream calls, want 1", n)
			}
			got := h.rec.last(t)
			if got.Method != tc.method || got.Path != tc.path || got.Query != tc.query {
				t.Fatalf("upstream call %s %s?%s, want %s %s?%s", got.Method, got.Path, got.Query, tc.method, tc.path, tc.query)
			}
			want := mimcKeys
			if strings.HasPrefix(tc.path, "/push/") {
				want = notifyKeys
			}
			want = append([]string(nil), want...)
			for k, v := range tc.extra {
				want = append(want, k)
				if g := got.Header[k]; len(g) != 1 || g[0] != v {
					t.Errorf("header %s = %q, want %q", k, g, v)
				}
			}
			sort.Strings(want)
			if keys := headerKeys(got.Header); !slices.Equal(keys, want) {
				t.Errorf("header keys %v, want exactly %v", keys, want)
			}
			if strings.HasPrefix(tc.path, "/push/") {
				if got.Header["access-token"][0] != testToken || got.Header["app_id"][0] != testNAppID {
					t.Errorf("notify credentials not sent: %v", got.Header)
				}
			} else if got.Header["appId"][0] != testAppID || got.Header["appKey"][0] != testAppKey || got.Header["appSecret"][0] != testAppSecret {
				t.Errorf("MIMC credentials not sent as headers")
			}
			if got.Body != tc.body {
				t.Errorf("body %s, want %s", got.Body, tc.body)
			}
			if tc.data != nil {
				tc.data(t, r.Data)
			}
		})
	}
}

func TestMembersAllWalksEveryPage(t *testing.T) {
	for _, inclusive := range []bool{false, true} {
		t.Run(fmt.Sprintf("inclusive=%v", inclusive), func(t *testing.T) {
			h := newHarness(t)
			h.fake.inclusive = inclusive
			names := make([]string, 249)
			for i := range names {
				names[i] = fmt.Sprintf("member-%03d", i)
			}
			topic := h.fake.addTopic("big", "owner", names...) // 250 members
			before := h.rec.count()
			r := h.ask("topic.members", map[string]any{"topicId": strconv.FormatInt(topic, 10), "all": true})
			mustOK(t, "topic.members", r)
			var v struct {
				Members []struct {
					Account string `json:"appAccout"`
					UUID    string `json:"uuid"`
				} `json:"members"`
				Count int  `json:"count"`
				IsEnd bool `json:"isEnd"`
			}
			if err := json.Unmarshal(r.Data, &v); err != nil {
				t.Fatal(err)
			}
			if v.Count != 250 || len(v.Members) != 250 || !v.IsEnd {
				t.Fatalf("count %d, %d members, isEnd %v; want 250, 250, true", v.Count, len(v.Members), v.IsEnd)
			}
			seen := map[string]bool{}
			last := int64(0)
			for _, m := range v.Members {
				u, _ := strconv.ParseInt(m.UUID, 10, 64)
				if seen[m.Account] || u <= last {
					t.Fatalf("member %s (uuid %s) repeated or out of order", m.Account, m.UUID)
				}
				seen[m.Account], last = true, u
			}
			calls := h.rec.all()[before:]
			if len(calls) != 3 {
				t.Fatalf("%d upstream page calls, want 3", len(calls))
			}
			if calls[0].Header["startUuid"][0] != "0" {
				t.Fatalf("first page from startUuid %s, want 0", calls[0].Header["startUuid"][0])
			}
			for i := 1; i < 3; i++ {
				prev, cur := calls[i-1].Header["startUuid"][0], calls[i].Header["startUuid"][0]
				if a, _ := strconv.ParseInt(prev, 10, 64); strconv.FormatInt(a, 10) == cur {
					t.Fatalf("page %d did not advance startUuid (%s)", i, cur)
				}
			}
		})
	}
}

func TestMembersAllFromStartUUID(t *testing.T) {
	h := newHarness(t)
	names := make([]string, 149)
	for i := range names {
		names[i] = fmt.Sprintf("m%03d", i)
	}
	topic := h.fake.addTopic("t", "owner", names...)
	r := h.ask("topic.members", map[string]any{"topicId": topic, "startUuid": 0})
	mustOK(t, "page", r)
	var page struct {
		Members []struct {
			UUID string `json:"uuid"`
		} `json:"members"`
	}
	_ = json.Unmarshal(r.Data, &page)
	if len(page.Members) != 100 {
		t.Fatalf("first page has %d members, want 100", len(page.Members))
	}
	r = h.ask("topic.members", map[string]any{"topicId": topic, "startUuid": page.Members[99].UUID, "all": true})
	mustOK(t, "rest", r)
	var rest struct {
		Count int  `json:"count"`
		IsEnd bool `json:"isEnd"`
	}
	_ = json.Unmarshal(r.Data, &rest)
	if rest.Count != 50 || !rest.IsEnd {
		t.Fatalf("rest: %s, want the 50 members after the first page", r.Data)
	}
}

func TestMembersAllStopsBeforeTheMaxPayload(t *testing.T) {
	h := newHarness(t, func(o *harnessOpts) { o.maxPayload = 8 << 10 })
	names := make([]string, 249)
	for i := range names {
		names[i] = fmt.Sprintf("member-%03d", i)
	}
	topic := h.fake.addTopic("big", "owner", names...)
	req := map[string]any{"topicId": topic, "all": true}
	seen := map[string]bool{}
	for round := 0; ; round++ {
		if round > 20 {
			t.Fatal("the walk never ended")
		}
		r := h.ask("topic.members", req)
		mustOK(t, "topic.members", r)
		if len(r.msg.Data) > 8<<10 {
			t.Fatalf("reply of %d bytes exceeds the max payload", len(r.msg.Data))
		}
		var v struct {
			Members []struct {
				UUID string `json:"uuid"`
			} `json:"members"`
			Count         int    `json:"count"`
			IsEnd         bool   `json:"isEnd"`
			NextStartUUID string `json:"nextStartUuid"`
		}
		if err := json.Unmarshal(r.Data, &v); err != nil {
			t.Fatal(err)
		}
		if v.Count != len(v.Members) || v.Count == 0 {
			t.Fatalf("count %d for %d members", v.Count, len(v.Members))
		}
		for _, m := range v.Members {
			if seen[m.UUID] {
				t.Fatalf("uuid %s repeated", m.UUID)
			}
			seen[m.UUID] = true
		}
		if v.IsEnd {
			if v.NextStartUUID != "" {
				t.Fatalf("last reply has nextStartUuid %s", v.NextStartUUID)
			}
			break
		}
		if v.NextStartUUID == "" {
			t.Fatal("a truncated reply needs nextStartUuid")
		}
		req["startUuid"] = v.NextStartUUID
	}
	if len(seen) != 250 {
		t.Fatalf("%d members in all, want 250", len(seen))
	}
}

func TestNonASCIIAccountIsSentBase64(t *testing.T) {
	h := newHarness(t)
	tests := []struct{ subject, req string }{
		{"topic.create", `{"account":"张三","topicName":"群"}`},
		{"topic.list", `{"account":"张三"}`},
	}
	for _, tc := range tests {
		r := h.ask(tc.subject, tc.req)
		mustOK(t, tc.subject, r)
		got := h.rec.last(t)
		want := base64.StdEncoding.EncodeToString([]byte("张三"))
		if a := got.Header["appAccount"]; len(a) != 1 || a[0] != want {
			t.Fatalf("%s: appAccount %q, want %q", tc.subject, a, want)
		}
		if e := got.Header["appAccountEncode"]; len(e) != 1 || e[0] != "base64" {
			t.Fatalf("%s: appAccountEncode %q, want base64", tc.subject, e)
		}
	}
	// The fake decoded the owner: the topic list of 张三 holds the topic just created.
	r := h.ask("topic.list", `{"account":"张三"}`)
	if string(r.Data) == "null" || string(r.Data) == "[]" {
		t.Fatalf("the topic was not created for 张三: %s", r.Data)
	}
	mustOK(t, "topic.list", h.ask("topic.list", `{"account":"alice"}`))
	if _, ok := h.rec.last(t).Header["appAccountEncode"]; ok {
		t.Fatal("an ASCII account must not be base64-encoded")
	}
}

func TestInvalidRequests(t *testing.T) {
	h := newHarness(t)
	long := strings.Repeat("x", MaxExtraBytes+1)
	cases := []struct{ subject, req, detail string }{
		{"topic.create", `{}`, "account is required"},
		{"topic.create", ``, "account is required"},
		{"topic.create", `{"account":"a"}`, "topicName is required"},
		{"topic.create", `{"account":"a","topicName":""}`, "topicName must not be empty"},
		{"topic.create", `{"account":"a","topicName":"t","extra":"` + long + `"}`, "extra must be at most 10240 bytes"},
		{"topic.create", `{"account":5,"topicName":"t"}`, "account must be a string"},
		{"topic.create", `{"account":"a\nb","topicName":"t"}`, "account must not contain control characters"},
		{"topic.create", `{"account":"a","topicName":"t","appSecret":"s"}`, `unknown field "appSecret"`},
		{"topic.create", `not json`, "must be a JSON object"},
		{"topic.create", `[1]`, "must be a JSON object"},
		{"topic.create", `{"app":"","account":"a","topicName":"t"}`, "app must be"},
		{"topic.update", `{"account":"a","topicId":1}`, "at least one of topicName, ownerAccount, extra"},
		{"topic.update", `{"account":"a","topicName":"x"}`, "topicId is required"},
		{"topic.update", `{"topicId":1,"topicName":"x"}`, "account is required"},
		{"topic.update", `{"account":"a","topicId":1,"ownerAccount":""}`, "ownerAccount must not be empty"},
		{"topic.update", `{"account":"a","topicId":1,"extra":"` + long + `"}`, "extra must be at most 10240 bytes"},
		{"topic.delete", `{}`, "topicId is required"},
		{"topic.delete", `{"topicId":"12x"}`, "topicId must be a 64-bit integer"},
		{"topic.delete", `{"topicId":9223372036854775808}`, "topicId must be a 64-bit integer"},
		{"topic.delete", `{"topicId":1.5}`, "topicId must be a 64-bit integer"},
		{"topic.delete", `{"topicId":1,"account":""}`, "account must not be empty"},
		{"topic.members", `{}`, "topicId is required"},
		{"topic.members", `{"topicId":1,"startUuid":-1}`, "startUuid must not be negative"},
		{"topic.members", `{"topicId":1,"startUuid":"abc"}`, "startUuid must be a 64-bit integer"},
		{"topic.members", `{"topicId":1,"all":"yes"}`, "all must be true or false"},
		{"topic.list", `{}`, "account is required"},
		{"topic.list", `{"account":""}`, "account must not be empty"},
		{"topic.list", `{"account":"a","topicId":1}`, `unknown field "topicId"`},
		{"topic.info", `{}`, "topicId is required"},
		{"topic.online", `{"topicId":null}`, "topicId is required"},
		{"topic.forbid", `{"topicId":1,"user":"u"}`, "forbidSeconds is required"},
		{"topic.forbid", `{"topicId":1,"user":"u","forbidSeconds":315360001}`, "forbidSeconds must be between 0 and 315360000"},
		{"topic.forbid", `{"topicId":1,"user":"u","forbidSeconds":-1}`, "forbidSeconds must be between 0 and 315360000"},
		{"topic.forbid", `{"topicId":1,"user":"u","forbidSeconds":"60"}`, "forbidSeconds must be an integer"},
		{"topic.forbid", `{"topicId":1,"user":"u","forbidSeconds":1.5}`, "forbidSeconds must be an integer"},
		{"topic.forbid", `{"topicId":1,"forbidSeconds":5}`, "user is required"},
		{"topic.forbid", `{"user":"u","forbidSeconds":5}`, "topicId is required"},
		{"certificate", `{}`, "provider is required"},
		{"certificate", `{"provider":8}`, "provider must be between 1 and 7"},
		{"certificate", `{"provider":0}`, "provider must be between 1 and 7"},
		{"certificate", `{"provider":1,"environment":2}`, "environment must be 0 (development) or 1 (production)"},
		{"certificate", `{"provider":"1"}`, "provider must be an integer"},
		{"task.detail", `{}`, "task_ids is required"},
		{"task.detail", `{"task_ids":[]}`, "task_ids must not be empty"},
		{"task.detail", `{"task_ids":["a"]}`, "task_ids[0] must be a 64-bit integer"},
		{"task.detail", `{"task_ids":[1,2.5]}`, "task_ids[1] must be a 64-bit integer"},
		{"task.detail", `{"task_ids":5}`, "task_ids must be a list"},
	}
	for _, tc := range cases {
		t.Run(tc.subject+"/"+tc.detail, func(t *testing.T) {
			r := h.ask(tc.subject, tc.req)
			mustFail(t, tc.subject, r, CodeInvalid, jobs.KindInvalidJob, tc.detail)
		})
	}
	if n := h.rec.count(); n != 0 {
		t.Fatalf("invalid requests made %d upstream calls", n)
	}
}

func TestUnknownApp(t *testing.T) {
	h := newHarness(t)
	mustFail(t, "ghost", h.ask("topic.list", `{"app":"ghost","account":"a"}`), CodeUnknownApp, jobs.KindUnknownApp, `app "ghost" is not configured`)
	mustFail(t, "notify only", h.ask("topic.info", `{"app":"notifyonly","topicId":1}`), CodeUnknownApp, jobs.KindUnknownApp, "no MIMC credentials")
	mustFail(t, "mimc only", h.ask("certificate", `{"app":"mimconly","provider":1}`), CodeUnknownApp, jobs.KindUnknownApp, "no notify credentials")
	mustFail(t, "notify without a token", h.ask("certificate", `{"app":"halfnotify","provider":1}`), CodeUnknownApp, jobs.KindUnknownApp, "no notify credentials")
	if n := h.rec.count(); n != 0 {
		t.Fatalf("%d upstream calls for unknown apps", n)
	}

	h2 := newHarness(t, func(o *harnessOpts) { o.noNotify = true })
	mustFail(t, "no notify URL", h2.ask("task.detail", `{"task_ids":[1]}`), CodeUnknownApp, jobs.KindUnknownApp, "PUSH_NOTIFY_URL")
}

func TestUpstreamFailures(t *testing.T) {
	h := newHarness(t, func(o *harnessOpts) { o.timeout = 300 * time.Millisecond })
	topic := h.fake.addTopic("t", "alice")
	T := strconv.FormatInt(topic, 10)

	h.fake.failNext(500, `{"code":500,"message":"internal error"}`)
	mustFail(t, "500", h.ask("topic.info", `{"topicId":`+T+`}`), CodeBadGateway, jobs.KindUpstreamUnavailable, "upstream unavailable")

	h.fake.failNext(200, `<html>oops</html>`)
	mustFail(t, "malformed", h.ask("topic.info", `{"topicId":`+T+`}`), CodeBadGateway, jobs.KindUpstreamUnavailable, "malformed")

	h.fake.failNext(429, `{"code":429,"message":"rate limit exceeded"}`)
	mustFail(t, "429", h.ask("topic.info", `{"topicId":`+T+`}`), CodeUnavailable, jobs.KindUpstreamUnavailable, "rate limit")

	mustFail(t, "unknown topic", h.ask("topic.info", `{"topicId":12345}`), CodeRejected, jobs.KindUpstreamRejected, "topic 12345 not exist")
	mustFail(t, "not the owner", h.ask("topic.update", `{"account":"mallory","topicId":`+T+`,"topicName":"x"}`), CodeRejected, jobs.KindUpstreamRejected, "only the owner")
	h.fake.failNext(200, `{"code":10002,"message":"bad parameter"}`)
	mustFail(t, "notify 10002", h.ask("task.detail", `{"task_ids":[1]}`), CodeRejected, jobs.KindUpstreamRejected, "code 10002")

	h.fake.mu.Lock()
	h.fake.delay = time.Second
	h.fake.mu.Unlock()
	mustFail(t, "timeout", h.ask("topic.online", `{"topicId":`+T+`}`), CodeBadGateway, jobs.KindUpstreamUnavailable, "")
}

func TestBreakerOpenAnswersWithoutCallingUpstream(t *testing.T) {
	h := newHarness(t)
	topic := h.fake.addTopic("t", "alice")
	req := `{"topicId":` + strconv.FormatInt(topic, 10) + `}`
	mustOK(t, "before", h.ask("topic.info", req))

	// Three retryable failures in a row trip the breaker (TripAfter 3).
	for i := 0; i < 3; i++ {
		h.fake.failNext(503, `{"code":503,"message":"outage"}`)
		mustFail(t, "outage", h.ask("topic.info", req), CodeBadGateway, jobs.KindUpstreamUnavailable, "upstream unavailable")
	}
	before := h.rec.count()
	mustFail(t, "open", h.ask("topic.info", req), CodeUnavailable, jobs.KindUpstreamUnavailable, "circuit breaker open")
	mustFail(t, "open walk", h.ask("topic.members", req[:len(req)-1]+`,"all":true}`), CodeUnavailable, jobs.KindUpstreamUnavailable, "circuit breaker open")
	if n := h.rec.count() - before; n != 0 {
		t.Fatalf("%d upstream calls through an open breaker", n)
	}
	// The notify upstream of the same app has its own gate.
	mustOK(t, "notify", h.ask("certificate", `{"provider":3}`))

	// A breaker opened by another replica closes the gate too.
	h2 := newHarness(t)
	h2.breakers.For("default", jobs.UpstreamNotify, h2.client.Host(jobs.UpstreamNotify)).OpenUntil(time.Now().Add(time.Minute))
	mustFail(t, "remote open", h2.ask("task.detail", `{"task_ids":[1]}`), CodeUnavailable, jobs.KindUpstreamUnavailable, "circuit breaker open")
	if n := h2.rec.count(); n != 0 {
		t.Fatalf("%d upstream calls through a remotely opened breaker", n)
	}
}

func TestPausedAppAnswersWithoutCallingUpstream(t *testing.T) {
	h := newHarness(t)
	h.fake.failNext(401, `{"code":401,"message":"invalid appKey"}`)
	mustFail(t, "401", h.ask("topic.list", `{"account":"a"}`), CodeUnavailable, jobs.KindUpstreamUnavailable, "refused the app's credentials")
	before := h.rec.count()
	mustFail(t, "paused", h.ask("topic.list", `{"account":"a"}`), CodeUnavailable, jobs.KindUpstreamUnavailable, "is paused")
	if n := h.rec.count() - before; n != 0 {
		t.Fatalf("%d upstream calls for a paused app", n)
	}
}

func TestNoSecretInRepliesOrLogs(t *testing.T) {
	h := newHarness(t)
	h.fake.echo = true
	// A misbehaving upstream echoes the credentials it got: the reply redacts them.
	r := h.ask("topic.create", `{"account":"alice","topicName":"t"}`)
	mustOK(t, "echo", r)
	if !strings.Contains(string(r.Data), `"appSecret":"[redacted]"`) || !strings.Contains(string(r.Data), `"appKey":"[redacted]"`) {
		t.Fatalf("echoed credentials not redacted: %s", r.Data)
	}
	// An error message that quotes a credential (also \u-escaped) is redacted in the
	// reply, the error header and the log.
	h.fake.failNext(500, `{"code":500,"message":"bad key `+testAppKey+`"}`)
	r = h.ask("topic.info", `{"topicId":1}`)
	mustFail(t, "500 echo", r, CodeBadGateway, jobs.KindUpstreamUnavailable, "[redacted]")
	escaped := strings.Replace(testToken, "0", `\u0030`, 1)
	h.fake.failNext(200, `{"code":10002,"message":"token `+escaped+` rejected"}`)
	r = h.ask("certificate", `{"provider":1}`)
	mustFail(t, "escaped echo", r, CodeRejected, jobs.KindUpstreamRejected, "[redacted]")
	// Credential fields in a request are refused by name, never echoed.
	r = h.ask("topic.list", `{"account":"a","appKey":"`+testAppKey+`"}`)
	mustFail(t, "credential field", r, CodeInvalid, jobs.KindInvalidJob, `unknown field "appKey"`)
}

func TestDiscovery(t *testing.T) {
	h := newHarness(t, func(o *harnessOpts) { o.prefix = "acme.prod"; o.version = "dev" })
	subj, err := micro.ControlSubject(micro.InfoVerb, ServiceName, "")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := h.nc.Request(subj, nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != "pushworker" || info.Version != "0.0.0-dev" || info.Metadata["version"] != "dev" || info.Description == "" {
		t.Fatalf("info %+v", info)
	}
	var subjects []string
	for _, e := range info.Endpoints {
		subjects = append(subjects, e.Subject)
		if e.QueueGroup != "pushworker" {
			t.Errorf("endpoint %s in queue group %q, want pushworker", e.Subject, e.QueueGroup)
		}
		if e.Metadata["call"] == "" {
			t.Errorf("endpoint %s has no call metadata", e.Subject)
		}
	}
	sort.Strings(subjects)
	want := []string{"certificate", "task.detail", "topic.create", "topic.delete", "topic.forbid", "topic.info",
		"topic.list", "topic.members", "topic.online", "topic.update"}
	for i := range want {
		want[i] = "acme.prod.api." + want[i]
	}
	sort.Strings(want)
	if !slices.Equal(subjects, want) {
		t.Fatalf("endpoints %v, want %v", subjects, want)
	}
	// The configured prefix is served, and PING answers.
	mustOK(t, "acme list", h.ask("topic.list", `{"account":"a"}`))
	ping, _ := micro.ControlSubject(micro.PingVerb, ServiceName, "")
	if _, err := h.nc.Request(ping, nil, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	// Errors are counted in the endpoint stats (updated just after the reply is sent).
	h.ask("topic.list", `{}`)
	stats, _ := micro.ControlSubject(micro.StatsVerb, ServiceName, "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		msg, err = h.nc.Request(stats, nil, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var st micro.Stats
		_ = json.Unmarshal(msg.Data, &st)
		i := slices.IndexFunc(st.Endpoints, func(e *micro.EndpointStats) bool { return e.Subject == "acme.prod.api.topic.list" })
		if i < 0 {
			t.Fatalf("no stats for topic.list: %s", msg.Data)
		}
		e := st.Endpoints[i]
		if e.NumRequests == 2 && e.NumErrors == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic.list stats %+v, want 2 requests, 1 error", e)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStopFinishesRequestsInFlight(t *testing.T) {
	h := newHarness(t)
	entered := make(chan string, 1)
	h.fake.mu.Lock()
	h.fake.delay, h.fake.entered = 300*time.Millisecond, entered
	h.fake.mu.Unlock()
	done := make(chan *nats.Msg, 1)
	go func() {
		msg, err := h.nc.Request("push.api.topic.list", []byte(`{"account":"a"}`), 5*time.Second)
		if err != nil {
			t.Error(err)
		}
		done <- msg
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
	if err := h.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	msg := <-done
	if msg == nil || !strings.Contains(string(msg.Data), `"ok":true`) {
		t.Fatalf("request in flight at stop: %v", msg)
	}
	if _, err := h.nc.Request("push.api.topic.list", []byte(`{"account":"a"}`), time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("after stop: %v, want no responders", err)
	}
}

// TestServedOnceStarted checks that a request sent on another connection right after Start
// returns is served: the endpoints are registered with the server, not only buffered.
func TestServedOnceStarted(t *testing.T) {
	h := newHarness(t)
	if err := h.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	asker, err := nats.Connect(h.nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer asker.Close()
	h.fake.addTopic("t", "a")
	for i := 0; i < 50; i++ {
		nc, err := nats.Connect(h.nc.ConnectedUrl())
		if err != nil {
			t.Fatal(err)
		}
		svc, err := Start(nc, h.opts)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := asker.Request("push.api.topic.list", []byte(`{"account":"a"}`), 5*time.Second)
		// The endpoints are a queue group: let the server forget this member before the next
		// start, or the next request may be handed to it.
		_ = svc.Stop()
		_ = nc.Flush()
		nc.Close()
		if err != nil {
			t.Fatalf("start %d: a request right after Start: %v", i, err)
		}
		if !strings.Contains(string(msg.Data), `"ok":true`) {
			t.Fatalf("start %d: %s", i, msg.Data)
		}
	}
}

func TestSemver(t *testing.T) {
	for in, want := range map[string]string{"1.2.3": "1.2.3", "v1.4.0": "1.4.0", "dev": "0.0.0-dev", "": "0.0.0",
		"abc 123/dirty": "0.0.0-abc-123-dirty", "1.2.3-rc.1+g1a2b": "1.2.3-rc.1+g1a2b"} {
		if got, _ := semver(in); got != want {
			t.Errorf("semver(%q) = %q, want %q", in, got, want)
		}
	}
}
