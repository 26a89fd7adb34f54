package api

import (
	"github.com/valyala/fasthttp"

	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pushworker/pushworker/jobs"
)

// sent is one upstream request as the client put it on the wire: header keys exactly as
// set (the server side would see them canonicalized).
type sent struct {
	Method string
	Path   string
	Query  string
	Header map[string][]string // keys exactly as sent (not canonicalised)
	Body   string
}

// recorder is the client's transport in tests: it records every request as it goes out
// (header keys exactly as sent) and passes it on.
type recorder struct {
	next fasthttp.RoundTripper
	mu   sync.Mutex
	reqs []sent
}

func (r *recorder) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	s := sent{Method: string(req.Header.Method()), Path: string(req.URI().Path()), Query: string(req.URI().QueryString()), Header: map[string][]string{}, Body: string(req.Body())}
	for k, v := range req.Header.All() {
		switch key := string(k); key {
		case "Host", "Content-Length", "User-Agent":
		default:
			s.Header[key] = append(s.Header[key], string(v))
		}
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, s)
	r.mu.Unlock()
	return r.next.RoundTrip(hc, req, resp)
}

func (r *recorder) all() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sent(nil), r.reqs...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

func (r *recorder) last(t *testing.T) sent {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		t.Fatal("no upstream request was made")
	}
	return r.reqs[len(r.reqs)-1]
}

// fakeTopic is one unlimited group of the fake MIMC topic API.
type fakeTopic struct {
	id      int64
	name    string
	owner   string
	extra   string
	members map[int64]string // uuid → account
}

// fakeUpstream implements the MIMC topic API (mimc-topic.txt) and the notify
// certificate and task-detail calls (notify-push.txt §4.1, §4.3) with state in maps.
type fakeUpstream struct {
	t      *testing.T
	appID  string
	appKey string
	secret string
	nAppID string
	token  string

	mu        sync.Mutex
	inclusive bool // userlist reads startUuid as inclusive (uuid >= startUuid)
	topics    map[int64]*fakeTopic
	nextTopic int64
	uuids     map[string]int64
	nextUUID  int64
	fail      []fakeFailure // answered (in order) instead of the next calls
	delay     time.Duration
	entered   chan string // receives the path of every call, when set
	echo      bool        // answers carry the credentials they got (a misbehaving upstream)
}

type fakeFailure struct {
	status int
	body   string
}

func newFakeUpstream(t *testing.T, appID, appKey, secret, nAppID, token string) (*fakeUpstream, *httptest.Server) {
	f := &fakeUpstream{t: t, appID: appID, appKey: appKey, secret: secret, nAppID: nAppID, token: token,
		topics: map[int64]*fakeTopic{}, nextTopic: 1<<62 + 1000, uuids: map[string]int64{}, nextUUID: 1<<60 + 1}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeUpstream) uuid(account string) int64 {
	if u, ok := f.uuids[account]; ok {
		return u
	}
	f.nextUUID += 7
	f.uuids[account] = f.nextUUID
	return f.nextUUID
}

// addTopic creates a topic directly (test set-up).
func (f *fakeUpstream) addTopic(name, owner string, members ...string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextTopic += 13
	tp := &fakeTopic{id: f.nextTopic, name: name, owner: owner, members: map[int64]string{}}
	tp.members[f.uuid(owner)] = owner
	for _, m := range members {
		tp.members[f.uuid(m)] = m
	}
	f.topics[tp.id] = tp
	return tp.id
}

func (f *fakeUpstream) failNext(status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = append(f.fail, fakeFailure{status, body})
}

func writeAnswer(w http.ResponseWriter, status, code int, msg string, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg, "data": data})
}

func (f *fakeUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	entered, delay := f.entered, f.delay
	var fl *fakeFailure
	if len(f.fail) > 0 {
		fl = &f.fail[0]
		f.fail = f.fail[1:]
	}
	f.mu.Unlock()
	if entered != nil {
		entered <- r.URL.Path
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if fl != nil {
		w.WriteHeader(fl.status)
		_, _ = io.WriteString(w, fl.body)
		return
	}
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path == "/push/certificate" || r.URL.Path == "/push/task/detail" {
		f.serveNotify(w, r, body)
		return
	}
	if r.Header.Get("appId") != f.appID || r.Header.Get("appKey") != f.appKey || r.Header.Get("appSecret") != f.secret {
		writeAnswer(w, 401, 401, "invalid appId/appKey/appSecret", nil)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.serveTopic(w, r, body)
}

func (f *fakeUpstream) account(r *http.Request) string {
	a := r.Header.Get("appAccount")
	if r.Header.Get("appAccountEncode") == "base64" {
		b, err := base64.StdEncoding.DecodeString(a)
		if err != nil {
			return "\x00bad base64"
		}
		return string(b)
	}
	return a
}

func (f *fakeUpstream) topic(w http.ResponseWriter, id int64) *fakeTopic {
	tp := f.topics[id]
	if tp == nil {
		writeAnswer(w, 400, 404, fmt.Sprintf("topic %d not exist", id), nil)
	}
	return tp
}

func headerID(r *http.Request, name string) int64 {
	v, _ := strconv.ParseInt(r.Header.Get(name), 10, 64)
	return v
}

func (f *fakeUpstream) serveTopic(w http.ResponseWriter, r *http.Request, body []byte) {
	switch r.Method + " " + r.URL.Path {
	case "POST /api/uctopic":
		var b struct {
			TopicName *string `json:"topicName"`
			Extra     string  `json:"extra"`
		}
		if json.Unmarshal(body, &b) != nil || b.TopicName == nil || f.account(r) == "" {
			writeAnswer(w, 400, 400, "topicName and appAccount are required", nil)
			return
		}
		owner := f.account(r)
		f.nextTopic += 13
		tp := &fakeTopic{id: f.nextTopic, name: *b.TopicName, owner: owner, extra: b.Extra, members: map[int64]string{f.uuid(owner): owner}}
		f.topics[tp.id] = tp
		data := map[string]any{"topicId": tp.id, "ownerUuid": f.uuid(owner), "topicName": tp.name, "extra": tp.extra}
		if f.echo {
			data["appKey"], data["appSecret"] = r.Header.Get("appKey"), r.Header.Get("appSecret")
		}
		writeAnswer(w, 200, 200, "success", data)
	case "POST /api/uctopic/update":
		var b struct {
			TopicID      jobs.TopicID `json:"topicId"`
			TopicName    *string      `json:"topicName"`
			OwnerAccount *string      `json:"ownerAccount"`
			Extra        *string      `json:"extra"`
		}
		if json.Unmarshal(body, &b) != nil {
			writeAnswer(w, 400, 400, "bad body", nil)
			return
		}
		tp := f.topic(w, int64(b.TopicID))
		if tp == nil {
			return
		}
		if f.account(r) != tp.owner {
			writeAnswer(w, 400, 403, "only the owner may update the topic", nil)
			return
		}
		if b.TopicName != nil {
			tp.name = *b.TopicName
		}
		if b.OwnerAccount != nil {
			tp.owner = *b.OwnerAccount
		}
		if b.Extra != nil {
			tp.extra = *b.Extra
		}
		writeAnswer(w, 200, 200, "success", map[string]any{"topicId": tp.id, "ownerUuid": f.uuid(tp.owner), "ownerAccount": tp.owner, "topicName": tp.name, "extra": tp.extra})
	case "DELETE /api/uctopic":
		tp := f.topic(w, headerID(r, "topicId"))
		if tp == nil {
			return
		}
		if a := f.account(r); a != "" && a != tp.owner {
			writeAnswer(w, 400, 403, "only the owner may delete the topic", nil)
			return
		}
		delete(f.topics, tp.id)
		writeAnswer(w, 200, 200, "success", nil)
	case "GET /api/uctopic/userlist":
		tp := f.topic(w, headerID(r, "topicId"))
		if tp == nil {
			return
		}
		start := headerID(r, "startUuid")
		uuids := make([]int64, 0, len(tp.members))
		for u := range tp.members {
			if u > start || (f.inclusive && u == start) {
				uuids = append(uuids, u)
			}
		}
		sort.Slice(uuids, func(i, j int) bool { return uuids[i] < uuids[j] })
		end := len(uuids) <= 100
		if !end {
			uuids = uuids[:100]
		}
		members := make([]map[string]string, 0, len(uuids))
		for _, u := range uuids {
			members = append(members, map[string]string{"appAccout": tp.members[u], "uuid": strconv.FormatInt(u, 10), "appId": f.appID})
		}
		writeAnswer(w, 200, 200, "success", map[string]any{"count": strconv.Itoa(len(members)), "members": members, "isEnd": strconv.FormatBool(end)})
	case "GET /api/uctopic/topics":
		a := f.account(r)
		var ids []int64
		for id, tp := range f.topics {
			for _, m := range tp.members {
				if m == a {
					ids = append(ids, id)
				}
			}
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		writeAnswer(w, 200, 200, "success", ids)
	case "GET /api/uctopic/topic":
		tp := f.topic(w, headerID(r, "topicId"))
		if tp == nil {
			return
		}
		writeAnswer(w, 200, 200, "success", map[string]string{"topicId": strconv.FormatInt(tp.id, 10), "topicName": tp.name,
			"ownerUuid": strconv.FormatInt(f.uuid(tp.owner), 10), "ownerAccount": tp.owner, "memberNum": strconv.Itoa(len(tp.members))})
	case "GET /api/uctopic/onlineinfo":
		tp := f.topic(w, headerID(r, "topicId"))
		if tp == nil {
			return
		}
		writeAnswer(w, 200, 200, "success", map[string]string{"topicId": strconv.FormatInt(tp.id, 10), "userCnt": "0"})
	case "POST /api/uctopic/forbidsendmsg":
		var b struct {
			TopicID       jobs.TopicID `json:"topicId"`
			User          string       `json:"user"`
			ForbidSeconds *int64       `json:"forbidSeconds"`
		}
		if json.Unmarshal(body, &b) != nil || b.User == "" || b.ForbidSeconds == nil {
			writeAnswer(w, 400, 400, "bad body", nil)
			return
		}
		if f.topic(w, int64(b.TopicID)) == nil {
			return
		}
		writeAnswer(w, 200, 200, "success", "")
	default:
		writeAnswer(w, 404, 404, "not found", nil)
	}
}

func (f *fakeUpstream) serveNotify(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Header.Get("access-token") != f.token {
		writeAnswer(w, 200, 10008, "access-token invalid", nil)
		return
	}
	if r.Header.Get("app_id") != f.nAppID {
		writeAnswer(w, 200, 40000, "app_id does not exist", nil)
		return
	}
	switch r.Method + " " + r.URL.Path {
	case "GET /push/certificate":
		q := r.URL.Query()
		writeAnswer(w, 200, 200, "", map[string]string{"app_id": "vendor-" + q.Get("provider"), "app_key": "vk", "app_secret": "vs",
			"certificate": "CERT-env" + q.Get("environment"), "name": "provider " + q.Get("provider")})
	case "POST /push/task/detail":
		var b struct {
			List []int64 `json:"list"`
		}
		if json.Unmarshal(body, &b) != nil {
			writeAnswer(w, 200, 10002, "bad parameter", nil)
			return
		}
		out := make([]map[string]int64, 0, len(b.List))
		for _, id := range b.List {
			out = append(out, map[string]int64{"task_id": id, "xiaomi_target": 10, "xiaomi_sent": 9, "xiaomi_received": 7})
		}
		writeAnswer(w, 200, 200, "", out)
	default:
		writeAnswer(w, 404, 404, "not found", nil)
	}
}
