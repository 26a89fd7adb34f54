package sandbox

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// topicHeader returns the app credential headers plus extra ones.
func topicHeader(kv ...string) map[string]string {
	h := map[string]string{"appId": DefaultMIMCAppID, "appKey": DefaultMIMCAppKey, "appSecret": DefaultMIMCAppSecret}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

// asOwner returns the headers of a call by account, base64-encoded as the doc asks.
func asAccount(account string, kv ...string) map[string]string {
	for _, r := range account {
		if r > 127 {
			return topicHeader(append([]string{"appAccount", base64.StdEncoding.EncodeToString([]byte(account)), "appAccountEncode", "base64"}, kv...)...)
		}
	}
	return topicHeader(append([]string{"appAccount", account}, kv...)...)
}

func mustOK(t *testing.T, a answer, what string) {
	t.Helper()
	if a.Status != 200 || a.Code != 200 || a.msg() != "success" {
		t.Fatalf("%s: HTTP %d %s", what, a.Status, a.Raw)
	}
}

func wantError(t *testing.T, a answer, status, code int, what string) {
	t.Helper()
	if a.Status != status || a.Code != code {
		t.Fatalf("%s: HTTP %d %s, want HTTP %d code %d", what, a.Status, a.Raw, status, code)
	}
}

func TestTopicCreateChecks(t *testing.T) {
	_, base := start(t, nil)
	url := base + "/api/uctopic"
	tests := []struct {
		name   string
		header map[string]string
		body   string
		status int
		code   int
	}{
		{"ok", asAccount("owner"), `{"topicName":"t","extra":"e"}`, 200, 200},
		{"ok without extra", asAccount("owner"), `{"topicName":"t"}`, 200, 200},
		{"base64 account", asAccount("张三"), `{"topicName":"t"}`, 200, 200},
		{"no credentials", map[string]string{"appAccount": "owner"}, `{"topicName":"t"}`, 401, 401},
		{"token only", map[string]string{"token": "abc", "appAccount": "owner"}, `{"topicName":"t"}`, 401, 401},
		{"wrong secret", asAccount("owner", "appSecret", "x"), `{"topicName":"t"}`, 401, 401},
		{"unknown app", asAccount("owner", "appId", "1"), `{"topicName":"t"}`, 401, 401},
		{"no appAccount", topicHeader(), `{"topicName":"t"}`, 400, 400},
		{"non-ASCII appAccount without base64", topicHeader("appAccount", "张三"), `{"topicName":"t"}`, 400, 400},
		{"bad base64 appAccount", topicHeader("appAccount", "%%%", "appAccountEncode", "base64"), `{"topicName":"t"}`, 400, 400},
		{"unknown encoding", topicHeader("appAccount", "x", "appAccountEncode", "hex"), `{"topicName":"t"}`, 400, 400},
		{"no topicName", asAccount("owner"), `{"extra":"e"}`, 400, 400},
		{"topicName number", asAccount("owner"), `{"topicName":5}`, 400, 400},
		{"extra too large", asAccount("owner"), `{"topicName":"t","extra":"` + strings.Repeat("x", MaxTopicExtra+1) + `"}`, 400, 400},
		{"extra at the limit", asAccount("owner"), `{"topicName":"t","extra":"` + strings.Repeat("x", MaxTopicExtra) + `"}`, 200, 200},
		{"not JSON", asAccount("owner"), `{`, 400, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, call(t, http.MethodPost, url, tt.header, tt.body), tt.status, tt.code, tt.name)
		})
	}
}

func TestTopicLifecycle(t *testing.T) {
	s, base := start(t, func(c *Config) {
		c.MIMCApps = append(c.MIMCApps, MIMCApp{AppID: "42", AppKey: "k", AppSecret: "s"})
	})
	const owner = "张三" // non-ASCII: sent base64-encoded

	// create
	a := call(t, http.MethodPost, base+"/api/uctopic", asAccount(owner), `{"topicName":"群","extra":"{\"k\":1}"}`)
	mustOK(t, a, "create")
	var created struct {
		TopicID   json.Number `json:"topicId"`
		OwnerUUID json.Number `json:"ownerUuid"`
		TopicName string      `json:"topicName"`
		Extra     string      `json:"extra"`
	}
	decode(t, a.Data, &created)
	id, err := created.TopicID.Int64()
	if err != nil || id <= 1<<53 || created.TopicName != "群" || created.Extra != `{"k":1}` {
		t.Fatalf("create answer %s", a.Raw)
	}
	if strings.Contains(string(a.Data), `"topicId":"`) {
		t.Fatalf("create answer's topicId is a string: %s", a.Data)
	}
	sid := strconv.FormatInt(id, 10)
	info, ok := s.Topic(id)
	if !ok || info.Owner != owner || len(info.Members) != 1 {
		t.Fatalf("Topic(%d) = %+v, %v", id, info, ok)
	}

	// info
	a = call(t, http.MethodGet, base+"/api/uctopic/topic", topicHeader("topicId", sid), "")
	mustOK(t, a, "info")
	want := `{"topicId":"` + sid + `","topicName":"群","ownerUuid":"` + created.OwnerUUID.String() + `","ownerAccount":"张三","memberNum":"1"}`
	if string(a.Data) != want {
		t.Fatalf("info data %s, want %s", a.Data, want)
	}

	// members: 250 in all, paged by 100
	for i := 1; i < 250; i++ {
		s.AddMember(id, fmt.Sprintf("m%03d", i))
	}
	var all []string
	var lastUUID int64
	start := "0"
	for page := 0; ; page++ {
		a = call(t, http.MethodGet, base+"/api/uctopic/userlist", topicHeader("topicId", sid, "startUuid", start), "")
		mustOK(t, a, "userlist")
		var d struct {
			Count   string `json:"count"`
			Members []struct {
				AppAccout string `json:"appAccout"`
				UUID      string `json:"uuid"`
				AppID     string `json:"appId"`
			} `json:"members"`
			IsEnd string `json:"isEnd"`
		}
		decode(t, a.Data, &d)
		wantN, wantEnd := []int{100, 100, 50}[page], []string{"false", "false", "true"}[page]
		if len(d.Members) != wantN || d.Count != strconv.Itoa(wantN) || d.IsEnd != wantEnd {
			t.Fatalf("page %d: %d members, count %q, isEnd %q", page, len(d.Members), d.Count, d.IsEnd)
		}
		for _, m := range d.Members {
			u, err := strconv.ParseInt(m.UUID, 10, 64)
			if err != nil || u <= lastUUID || m.AppID != DefaultMIMCAppID {
				t.Fatalf("member %+v after uuid %d", m, lastUUID)
			}
			lastUUID = u
			all = append(all, m.AppAccout)
			start = m.UUID
		}
		if d.IsEnd == "true" {
			break
		}
	}
	if len(all) != 250 || all[0] != owner || all[249] != "m249" {
		t.Fatalf("members: %d, first %q, last %q", len(all), all[0], all[len(all)-1])
	}

	// topics of an account, as JSON numbers
	a = call(t, http.MethodGet, base+"/api/uctopic/topics", asAccount("m007"), "")
	mustOK(t, a, "topics")
	if string(a.Data) != "["+sid+"]" {
		t.Fatalf("topics of m007: %s", a.Data)
	}
	a = call(t, http.MethodGet, base+"/api/uctopic/topics", asAccount("stranger"), "")
	if string(a.Data) != "[]" {
		t.Fatalf("topics of a stranger: %s", a.Data)
	}

	// online
	s.SetOnline(id, 7)
	a = call(t, http.MethodGet, base+"/api/uctopic/onlineinfo", topicHeader("topicId", sid), "")
	mustOK(t, a, "onlineinfo")
	if string(a.Data) != `{"topicId":"`+sid+`","userCnt":"7"}` {
		t.Fatalf("onlineinfo data %s", a.Data)
	}

	// update
	upd := func(caller, body string) answer {
		return call(t, http.MethodPost, base+"/api/uctopic/update", asAccount(caller), body)
	}
	wantError(t, upd("m001", `{"topicId":`+sid+`,"topicName":"x"}`), 400, 403, "update by a member")
	wantError(t, upd(owner, `{"topicId":`+sid+`}`), 400, 400, "update without changes")
	wantError(t, upd(owner, `{"topicId":`+sid+`,"ownerAccount":"stranger"}`), 400, 400, "transfer to a non-member")
	wantError(t, upd(owner, `{"topicId":123,"topicName":"x"}`), 400, 404, "update of an unknown topic")
	wantError(t, upd(owner, `{"topicId":`+sid+`,"extra":"`+strings.Repeat("x", MaxTopicExtra+1)+`"}`), 400, 400, "update with a large extra")
	wantError(t, call(t, http.MethodPost, base+"/api/uctopic/update", topicHeader(), `{"topicId":`+sid+`,"topicName":"x"}`), 400, 400, "update without appAccount")
	a = upd(owner, `{"topicId":"`+sid+`","topicName":"renamed","ownerAccount":"m001","extra":"e2"}`)
	mustOK(t, a, "update")
	var updated struct {
		TopicID      json.Number `json:"topicId"`
		OwnerUUID    json.Number `json:"ownerUuid"`
		OwnerAccount string      `json:"ownerAccount"`
		TopicName    string      `json:"topicName"`
		Extra        string      `json:"extra"`
	}
	decode(t, a.Data, &updated)
	if updated.TopicID.String() != sid || updated.OwnerAccount != "m001" || updated.TopicName != "renamed" || updated.Extra != "e2" || updated.OwnerUUID.String() == created.OwnerUUID.String() {
		t.Fatalf("update answer %s", a.Raw)
	}
	wantError(t, upd(owner, `{"topicId":`+sid+`,"topicName":"back"}`), 400, 403, "update by the former owner")

	// forbid
	forbid := func(h map[string]string, body string) answer {
		return call(t, http.MethodPost, base+"/api/uctopic/forbidsendmsg", h, body)
	}
	for _, bad := range []string{
		`{"topicId":"` + sid + `","user":"m002","forbidSeconds":315360001}`,
		`{"topicId":"` + sid + `","user":"m002","forbidSeconds":-1}`,
		`{"topicId":"` + sid + `","user":"m002","forbidSeconds":1.5}`,
		`{"topicId":"` + sid + `","user":"m002"}`,
		`{"topicId":"` + sid + `","forbidSeconds":5}`,
		`{"topicId":"x","user":"m002","forbidSeconds":5}`,
	} {
		wantError(t, forbid(topicHeader(), bad), 400, 400, "forbid "+bad)
	}
	wantError(t, forbid(asAccount("m003"), `{"topicId":"`+sid+`","user":"m002","forbidSeconds":60}`), 400, 403, "forbid by a member")
	a = forbid(topicHeader(), `{"topicId":"`+sid+`","user":"m002","forbidSeconds":315360000}`)
	mustOK(t, a, "forbid")
	if string(a.Data) != `""` {
		t.Fatalf("forbid data %s, want \"\"", a.Data)
	}
	until, ok := s.ForbiddenUntil(id, "m002")
	if d := time.Until(until); !ok || d < 315359990*time.Second || d > 315360000*time.Second {
		t.Fatalf("ForbiddenUntil = %v, %v", until, ok)
	}
	mustOK(t, forbid(asAccount("m001"), `{"topicId":`+sid+`,"user":"m002","forbidSeconds":0}`), "lift the ban")
	if _, ok := s.ForbiddenUntil(id, "m002"); ok {
		t.Fatal("ban not lifted")
	}

	// another app sees nothing
	other := map[string]string{"appId": "42", "appKey": "k", "appSecret": "s", "topicId": sid}
	wantError(t, call(t, http.MethodGet, base+"/api/uctopic/topic", other, ""), 400, 404, "info by another app")

	// delete
	del := func(h map[string]string) answer { return call(t, http.MethodDelete, base+"/api/uctopic", h, "") }
	wantError(t, del(asAccount(owner, "topicId", sid)), 400, 403, "delete by the former owner")
	wantError(t, del(topicHeader()), 400, 400, "delete without topicId")
	wantError(t, del(other), 400, 404, "delete by another app")
	a = del(asAccount("m001", "topicId", sid))
	mustOK(t, a, "delete")
	if string(a.Data) != "null" {
		t.Fatalf("delete data %s", a.Data)
	}
	for _, p := range []string{"/api/uctopic/topic", "/api/uctopic/onlineinfo", "/api/uctopic/userlist"} {
		wantError(t, call(t, http.MethodGet, base+p, topicHeader("topicId", sid), ""), 400, 404, p+" after delete")
	}
	wantError(t, del(topicHeader("topicId", sid)), 400, 404, "delete twice")
	if _, ok := s.Topic(id); ok {
		t.Fatal("Topic still returns a deleted topic")
	}

	// pushes to the deleted topic
	for _, p := range []struct{ path, fields string }{
		{"/api/push/p2t/", `"fromAccount":"a","topicId":` + sid + `,"msg":"m"`},
		{"/api/push/p2t/more", `"fromAccount":"a","topicIds":[1,` + sid + `],"msg":"m"`},
		{"/api/push/ucs/singleMsgPush", `"fromAccount":"a","topicId":` + sid + `,"message":"m"`},
		{"/api/push/ucs/multiMsgPush", `"fromAccount":"a","topicId":` + sid + `,"messages":["m"]`},
	} {
		a := push(t, base, p.path, p.fields)
		if a.Status != 400 || a.Code != 400 || a.msg() != "topic "+sid+" not exist" {
			t.Fatalf("%s to a deleted topic: HTTP %d %s", p.path, a.Status, a.Raw)
		}
	}
	a = push(t, base, "/api/push/ucs/multiTopicPush", `"fromAccount":"a","topicIds":[`+sid+`,77],"message":"m"`)
	mustOK(t, a, "multiTopicPush")
	var mt struct {
		SuccPacketIDs []string      `json:"succPacketIds"`
		FailTopicIDs  []json.Number `json:"failTopicIds"`
	}
	decode(t, a.Data, &mt)
	if len(mt.SuccPacketIDs) != 1 || len(mt.FailTopicIDs) != 1 || mt.FailTopicIDs[0].String() != sid {
		t.Fatalf("multiTopicPush with a deleted topic: %s", a.Data)
	}
	// the other app's topic with this id is not deleted
	body := `{"appId":42,"appKey":"k","appSecret":"s","fromAccount":"a","topicId":` + sid + `,"msg":"m"}`
	mustOK(t, call(t, http.MethodPost, base+"/api/push/p2t/", nil, body), "push by another app")
}

func TestTopicHeaderChecks(t *testing.T) {
	_, base := start(t, nil)
	tests := []struct {
		name   string
		method string
		path   string
		header map[string]string
		code   int
	}{
		{"info without topicId", http.MethodGet, "/api/uctopic/topic", topicHeader(), 400},
		{"info with bad topicId", http.MethodGet, "/api/uctopic/topic", topicHeader("topicId", "abc"), 400},
		{"info of an unknown topic", http.MethodGet, "/api/uctopic/topic", topicHeader("topicId", "5"), 404},
		{"userlist with bad startUuid", http.MethodGet, "/api/uctopic/userlist", topicHeader("topicId", "5", "startUuid", "x"), 400},
		{"topics without appAccount", http.MethodGet, "/api/uctopic/topics", topicHeader(), 400},
		{"online without credentials", http.MethodGet, "/api/uctopic/onlineinfo", map[string]string{"topicId": "5"}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, tt.method, base+tt.path, tt.header, "")
			status := 400
			if tt.code == 401 {
				status = 401
			}
			wantError(t, a, status, tt.code, tt.name)
		})
	}
}
