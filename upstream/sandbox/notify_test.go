package sandbox

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

var notifyHeader = map[string]string{"access-token": DefaultNotifyToken, "app_id": DefaultNotifyAppID}

func notify(t *testing.T, base, body string) answer {
	t.Helper()
	return call(t, http.MethodPost, base+"/push/notify", notifyHeader, body)
}

func taskID(t *testing.T, a answer) int64 {
	t.Helper()
	if a.Status != 200 || a.Code != 200 || a.Message != nil {
		t.Fatalf("notify: HTTP %d %s", a.Status, a.Raw)
	}
	var d struct {
		TaskID *int64 `json:"task_id"`
	}
	decode(t, a.Data, &d)
	if d.TaskID == nil {
		t.Fatalf("no task_id in %s", a.Raw)
	}
	return *d.TaskID
}

func TestNotifyAuth(t *testing.T) {
	_, base := start(t, nil)
	body := `{"audience":"all","message":{"type":"text","title":"t","body":"b"}}`
	tests := []struct {
		name   string
		header map[string]string
		code   int
	}{
		{"ok", notifyHeader, 200},
		{"admin headers accepted", map[string]string{"access-token": DefaultNotifyToken, "app_id": DefaultNotifyAppID, "group_id": "g", "user_id": "7"}, 200},
		{"no token", map[string]string{"app_id": DefaultNotifyAppID}, CodeTokenMissing},
		{"no headers", nil, CodeTokenMissing},
		{"wrong token", map[string]string{"access-token": "nope", "app_id": DefaultNotifyAppID}, CodeTokenInvalid},
		{"unknown app", map[string]string{"access-token": DefaultNotifyToken, "app_id": "nope"}, CodeUnknownApp},
		{"no app_id", map[string]string{"access-token": DefaultNotifyToken}, CodeUnknownApp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, ep := range []struct{ method, path, body string }{
				{http.MethodPost, "/push/notify", body},
				{http.MethodPost, "/push/task/detail", `{"list":[1]}`},
				{http.MethodGet, "/push/certificate?provider=1", ""},
			} {
				a := call(t, ep.method, base+ep.path, tt.header, ep.body)
				if a.Status != 200 || a.Code != tt.code {
					t.Fatalf("%s: HTTP %d %s, want code %d", ep.path, a.Status, a.Raw, tt.code)
				}
				if tt.code != 200 && string(a.Data) != "null" {
					t.Fatalf("%s: data %s, want null", ep.path, a.Data)
				}
			}
		})
	}
}

func TestNotifyValidation(t *testing.T) {
	_, base := start(t, nil)
	list := func(n int, quote bool) string {
		l := make([]string, n)
		for i := range l {
			l[i] = strconv.Itoa(i + 1)
			if quote {
				l[i] = `"t` + l[i] + `"`
			}
		}
		return "[" + strings.Join(l, ",") + "]"
	}
	tests := []struct {
		name string
		body string
		code int
	}{
		{"all, text", `{"audience":"all","message":{"type":"text","title":"t","body":"b"}}`, 200},
		{"no message", `{"audience":"all"}`, 200},
		{"default type", `{"audience":"all","message":{"title":"t"}}`, 200},
		{"cmd with ext", `{"audience":{"tag":["beijing","shanghai"]},"message":{"type":"cmd","ext":{"key1":12345,"key2":"xxx"}}}`, 200},
		{"image", `{"audience":{"push_token":["token1","token2"]},"message":{"type":"image","attachment_url":"https://xxx.com/images/1.jpg"}}`, 200},
		{"image jpeg with query", `{"audience":"all","message":{"type":"image","attachment_url":"https://x/1.JPEG?w=2"}}`, 200},
		{"image png", `{"audience":"all","message":{"type":"image","attachment_url":"https://x/1.png"}}`, 200},
		{"user ids", `{"audience":{"user_id":[111,222]},"message":{"type":"text"}}`, 200},
		{"500 targets", `{"audience":{"alias":` + list(500, true) + `}}`, 200},
		{"501 targets", `{"audience":{"alias":` + list(501, true) + `}}`, CodeTooManyTargets},
		{"501 user ids", `{"audience":{"user_id":` + list(501, false) + `}}`, CodeTooManyTargets},
		{"setting", `{"audience":"all","setting":{"request_id":"r","distribution_strategy":"ospush_only","ospush_sequence":["ups","fcm","meizu"]}}`, 200},
		{"vendor blocks", `{"audience":"all","message":{"android":{"click_action":"intent","intent":"intent:#Intent;end"},"huawei":{"click_action":"open_app","badge_class":"a.B"},"vivo":{"push_mode":1,"classification":0},"ios":{"sound":"s","content_available":true}}}`, 200},
		{"badge", `{"audience":"all","message":{"badge":"+1"}}`, 200},
		{"no audience", `{"message":{"type":"text"}}`, CodeBadParam},
		{"null audience", `{"audience":null}`, CodeBadParam},
		{"audience string", `{"audience":"everyone"}`, CodeBadParam},
		{"audience number", `{"audience":5}`, CodeBadParam},
		{"empty audience object", `{"audience":{}}`, CodeBadParam},
		{"two audience keys", `{"audience":{"tag":["a"],"alias":["b"]}}`, CodeBadParam},
		{"unknown audience key", `{"audience":{"device":["a"]}}`, CodeBadParam},
		{"empty list", `{"audience":{"tag":[]}}`, CodeBadParam},
		{"not a list", `{"audience":{"tag":"a"}}`, CodeBadParam},
		{"empty tag", `{"audience":{"tag":[""]}}`, CodeBadParam},
		{"user id string", `{"audience":{"user_id":["111"]}}`, CodeBadParam},
		{"bad type", `{"audience":"all","message":{"type":"video"}}`, CodeBadParam},
		{"image without url", `{"audience":"all","message":{"type":"image"}}`, CodeBadParam},
		{"image gif", `{"audience":"all","message":{"type":"image","attachment_url":"https://x/1.gif"}}`, CodeBadParam},
		{"intent without intent", `{"audience":"all","message":{"xiaomi":{"click_action":"intent"}}}`, CodeBadParam},
		{"bad click_action", `{"audience":"all","message":{"oppo":{"click_action":"launch"}}}`, CodeBadParam},
		{"bad push_mode", `{"audience":"all","message":{"vivo":{"push_mode":2}}}`, CodeBadParam},
		{"bad badge", `{"audience":"all","message":{"badge":"many"}}`, CodeBadParam},
		{"title number", `{"audience":"all","message":{"title":5}}`, CodeBadParam},
		{"ext not an object", `{"audience":"all","message":{"ext":[1]}}`, CodeBadParam},
		{"message not an object", `{"audience":"all","message":"hi"}`, CodeBadParam},
		{"bad strategy", `{"audience":"all","setting":{"distribution_strategy":"fast"}}`, CodeBadParam},
		{"bad sequence", `{"audience":"all","setting":{"ospush_sequence":["apns"]}}`, CodeBadParam},
		{"setting not an object", `{"audience":"all","setting":"x"}`, CodeBadParam},
		{"not JSON", `{"audience":`, CodeBadParam},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := notify(t, base, tt.body)
			if a.Status != 200 || a.Code != tt.code {
				t.Fatalf("HTTP %d %s, want code %d", a.Status, a.Raw, tt.code)
			}
			if tt.code != 200 && (a.msg() == "" || string(a.Data) != "null") {
				t.Fatalf("error answer %s: want a message and null data", a.Raw)
			}
		})
	}
}

func TestNotifyTaskIDsAndDedup(t *testing.T) {
	s, base := start(t, func(c *Config) {
		c.NotifyApps = append(c.NotifyApps, NotifyApp{AppID: "other", AccessToken: "tok"})
	})
	withID := func(rid string) string {
		return `{"audience":"all","setting":{"request_id":"` + rid + `"},"message":{"type":"text"}}`
	}
	first := taskID(t, notify(t, base, withID("r1")))
	second := taskID(t, notify(t, base, withID("r2")))
	if second <= first {
		t.Fatalf("task ids %d then %d: want increasing", first, second)
	}
	if again := taskID(t, notify(t, base, withID("r1"))); again != first {
		t.Fatalf("request id r1 again: task %d, want %d", again, first)
	}
	// without request id every call is a new task
	a, b := taskID(t, notify(t, base, `{"audience":"all"}`)), taskID(t, notify(t, base, `{"audience":"all"}`))
	if a <= second || b <= a {
		t.Fatalf("task ids %d, %d after %d", a, b, second)
	}
	// request ids are per app
	o := call(t, http.MethodPost, base+"/push/notify", map[string]string{"access-token": "tok", "app_id": "other"}, withID("r1"))
	if id := taskID(t, o); id == first {
		t.Fatal("another app's request id r1 was deduplicated")
	}
	// a rejected call does not remember its request id
	notify(t, base, `{"audience":"none","setting":{"request_id":"r3"}}`)
	if id := taskID(t, notify(t, base, withID("r3"))); id <= b {
		t.Fatalf("r3 after a rejected call: task %d", id)
	}
	if st := s.Stats(); st.Classes[ClassNotify].Calls != 7 || st.Paths["/push/notify"] != 8 {
		t.Fatalf("notify stats %+v, paths %v", st.Classes[ClassNotify], st.Paths)
	}
}

func TestNotifyBoolAnswer(t *testing.T) {
	s, base := start(t, nil)
	s.SetNotifyBoolAnswer(true)
	a := notify(t, base, `{"audience":"all"}`)
	if a.Status != 200 || a.Code != 200 || string(a.Data) != "true" {
		t.Fatalf("bool answer: %s", a.Raw)
	}
	s.SetNotifyBoolAnswer(false)
	if id := taskID(t, notify(t, base, `{"audience":"all"}`)); id != 2 {
		t.Fatalf("task id %d, want 2 (the bool answer's call made task 1)", id)
	}
}

// detail is one entry of /push/task/detail.
type detail map[string]int64

func taskDetail(t *testing.T, base, list string) []detail {
	t.Helper()
	a := call(t, http.MethodPost, base+"/push/task/detail", notifyHeader, `{"list":`+list+`}`)
	if a.Status != 200 || a.Code != 200 {
		t.Fatalf("task detail: HTTP %d %s", a.Status, a.Raw)
	}
	var ds []detail
	decode(t, a.Data, &ds)
	return ds
}

func TestNotifyStatsProgress(t *testing.T) {
	s, base := start(t, func(c *Config) { c.StatsStep = 40 * time.Millisecond })
	id := taskID(t, notify(t, base, `{"audience":{"push_token":["a","b","c","d","e","f","g","h","i"]}}`))
	mx := taskID(t, notify(t, base, `{"audience":{"tag":["x","y"]},"setting":{"distribution_strategy":"mxpush_only"}}`))
	osOnly := taskID(t, notify(t, base, `{"audience":"all","setting":{"distribution_strategy":"ospush_only"}}`))

	ds := taskDetail(t, base, "["+strconv.FormatInt(id, 10)+",999999,"+strconv.FormatInt(mx, 10)+","+strconv.FormatInt(osOnly, 10)+"]")
	if len(ds) != 3 || ds[0]["task_id"] != id || ds[1]["task_id"] != mx || ds[2]["task_id"] != osOnly {
		t.Fatalf("detail of 3 known and 1 unknown id: %v", ds)
	}
	for _, d := range ds {
		if len(d) != 25 {
			t.Fatalf("detail has %d fields, want 24 counters and task_id: %v", len(d), d)
		}
	}
	total := func(d detail, what string) (n int64) {
		for _, ch := range NotifyChannels {
			n += d[ch+"_"+what]
		}
		return n
	}
	if total(ds[0], "target") != 9 || total(ds[0], "sent") != 0 || total(ds[0], "received") != 0 {
		t.Fatalf("new task: %v", ds[0])
	}
	if ds[1]["mxpush_target"] != 2*devicesPerTag || total(ds[1], "target") != 2*devicesPerTag {
		t.Fatalf("mxpush_only task: %v", ds[1])
	}
	if ds[2]["mxpush_target"] != 0 || total(ds[2], "target") != devicesAll {
		t.Fatalf("ospush_only task: %v", ds[2])
	}
	channels := 0
	for _, ch := range NotifyChannels {
		if ds[0][ch+"_target"] > 0 {
			channels++
		}
	}
	if channels < 2 {
		t.Fatalf("task spread over %d channels: %v", channels, ds[0])
	}

	// sent grows, then received, until both reach the target; never received > sent.
	var prev detail
	sawPartial := false
	eventually(t, 5*time.Second, "task stats to complete", func() bool {
		d := taskDetail(t, base, "["+strconv.FormatInt(id, 10)+"]")[0]
		for _, ch := range NotifyChannels {
			tg, se, re := d[ch+"_target"], d[ch+"_sent"], d[ch+"_received"]
			if re > se || se > tg || (prev != nil && (se < prev[ch+"_sent"] || re < prev[ch+"_received"])) {
				t.Fatalf("channel %s: target %d sent %d received %d after %v", ch, tg, se, re, prev)
			}
		}
		if sent, recv := total(d, "sent"), total(d, "received"); sent > 0 && sent < 9 || recv > 0 && recv < 9 {
			sawPartial = true
		}
		prev = d
		return total(d, "received") == 9 && total(d, "sent") == 9
	})
	if !sawPartial {
		t.Error("stats jumped to complete without intermediate steps")
	}
	got, ok := s.NotifyTask(id)
	if !ok || got["mxpush"].Received != got["mxpush"].Target || got["mxpush"].Target == 0 {
		t.Fatalf("NotifyTask = %v, %v", got, ok)
	}

	// bad lists
	for _, body := range []string{`{}`, `{"list":"1"}`, `{"list":["a"]}`, `[1]`} {
		a := call(t, http.MethodPost, base+"/push/task/detail", notifyHeader, body)
		if a.Code != CodeBadParam {
			t.Fatalf("detail %s: %s", body, a.Raw)
		}
	}
	// an empty list answers an empty list
	if ds := taskDetail(t, base, "[]"); len(ds) != 0 {
		t.Fatalf("empty list: %v", ds)
	}
}

func TestCertificate(t *testing.T) {
	_, base := start(t, nil)
	tests := []struct {
		query string
		code  int
		name  string // in the certificate's name
	}{
		{"environment=1&provider=1", 200, "APNS certificate (production)"},
		{"environment=0&provider=2", 200, "Huawei certificate (development)"},
		{"provider=7", 200, "FCM certificate (production)"},
		{"environment=0&provider=5", 200, "VIVO"},
		{"environment=2&provider=1", CodeBadParam, ""},
		{"environment=1", CodeBadParam, ""},
		{"provider=0", CodeBadParam, ""},
		{"provider=8", CodeBadParam, ""},
		{"provider=x", CodeBadParam, ""},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			a := call(t, http.MethodGet, base+"/push/certificate?"+tt.query, notifyHeader, "")
			if a.Status != 200 || a.Code != tt.code {
				t.Fatalf("HTTP %d %s, want code %d", a.Status, a.Raw, tt.code)
			}
			if tt.code != 200 {
				return
			}
			var d map[string]string
			decode(t, a.Data, &d)
			for _, k := range []string{"app_id", "app_key", "app_secret", "certificate", "name"} {
				if d[k] == "" {
					t.Fatalf("%s empty in %s", k, a.Data)
				}
			}
			if !strings.Contains(d["name"], tt.name) || a.Message != nil {
				t.Fatalf("answer %s", a.Raw)
			}
		})
	}
	if a := call(t, http.MethodPost, base+"/push/certificate?provider=1", notifyHeader, "{}"); a.Status != 405 {
		t.Fatalf("POST certificate: HTTP %d", a.Status)
	}
}
