package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream"
)

// Limits of request fields (mimc-topic.txt, notify-push.txt §4.1).
const (
	MaxExtraBytes    = 10240     // extra: at most 10 KB
	MaxForbidSeconds = 315360000 // forbidSeconds: at most ten years
)

// call is one endpoint of the API: its subject under <prefix>.api, the upstream call it
// makes and the request fields it accepts. The calls differ only by these columns and by
// build, which checks the required fields and writes the upstream request.
type call struct {
	name     string // micro endpoint name
	subject  string // relative to <prefix>.api
	upstream string
	method   string
	path     string
	fields   []string // accepted request fields besides app
	pages    bool     // "all": true walks every page (topic.members)
	// build checks the required fields and completes r (method, path and upstream set).
	build func(r *upstream.Request, p *params) *jobs.Error
}

// calls lists the endpoints in the order of contract §9.
var calls = []call{
	{name: "topic_create", subject: "topic.create", upstream: jobs.UpstreamMIMC, method: http.MethodPost, path: "/api/uctopic",
		fields: []string{"account", "topicName", "extra"}, build: buildCreate},
	{name: "topic_update", subject: "topic.update", upstream: jobs.UpstreamMIMC, method: http.MethodPost, path: "/api/uctopic/update",
		fields: []string{"account", "topicId", "topicName", "ownerAccount", "extra"}, build: buildUpdate},
	{name: "topic_delete", subject: "topic.delete", upstream: jobs.UpstreamMIMC, method: http.MethodDelete, path: "/api/uctopic",
		fields: []string{"topicId", "account"}, build: buildDelete},
	{name: "topic_members", subject: "topic.members", upstream: jobs.UpstreamMIMC, method: http.MethodGet, path: "/api/uctopic/userlist",
		fields: []string{"topicId", "startUuid", "all"}, pages: true, build: buildMembers},
	{name: "topic_list", subject: "topic.list", upstream: jobs.UpstreamMIMC, method: http.MethodGet, path: "/api/uctopic/topics",
		fields: []string{"account"}, build: buildList},
	{name: "topic_info", subject: "topic.info", upstream: jobs.UpstreamMIMC, method: http.MethodGet, path: "/api/uctopic/topic",
		fields: []string{"topicId"}, build: buildTopicOnly},
	{name: "topic_online", subject: "topic.online", upstream: jobs.UpstreamMIMC, method: http.MethodGet, path: "/api/uctopic/onlineinfo",
		fields: []string{"topicId"}, build: buildTopicOnly},
	{name: "topic_forbid", subject: "topic.forbid", upstream: jobs.UpstreamMIMC, method: http.MethodPost, path: "/api/uctopic/forbidsendmsg",
		fields: []string{"topicId", "user", "forbidSeconds"}, build: buildForbid},
	{name: "certificate", subject: "certificate", upstream: jobs.UpstreamNotify, method: http.MethodGet, path: "/push/certificate",
		fields: []string{"environment", "provider"}, build: buildCertificate},
	{name: "task_detail", subject: "task.detail", upstream: jobs.UpstreamNotify, method: http.MethodPost, path: "/push/task/detail",
		fields: []string{"task_ids"}, build: buildTaskDetail},
}

// fieldKind says how a request field is decoded.
type fieldKind int

const (
	kString fieldKind = iota // JSON string
	kID                      // 64-bit integer: JSON number or decimal string (topicId, startUuid)
	kInt                     // JSON integer
	kBool                    // true or false
	kIDList                  // list of kID
)

// fieldKinds lists every request field of every call (besides app) and its kind.
var fieldKinds = map[string]fieldKind{
	"account": kString, "topicName": kString, "ownerAccount": kString, "extra": kString, "user": kString,
	"topicId": kID, "startUuid": kID,
	"forbidSeconds": kInt, "environment": kInt, "provider": kInt,
	"all":      kBool,
	"task_ids": kIDList,
}

// params are the decoded fields of a request, by name; a field not given is absent.
type params struct {
	app   string
	str   map[string]string
	num   map[string]int64
	flag  map[string]bool
	lists map[string][]int64
}

// parseField decodes one field; the detail of every error names the field.
func (p *params) parseField(name string, raw json.RawMessage) *jobs.Error {
	switch kind := fieldKinds[name]; kind {
	case kString:
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return invalid("%s must be a string", name)
		}
		p.str[name] = s
	case kID, kInt:
		v, ok := parseInt(raw, kind == kID)
		if !ok && kind == kID {
			return invalid("%s must be a 64-bit integer (JSON number or decimal string)", name)
		}
		if !ok {
			return invalid("%s must be an integer", name)
		}
		p.num[name] = v
	case kBool:
		var b bool
		if json.Unmarshal(raw, &b) != nil {
			return invalid("%s must be true or false", name)
		}
		p.flag[name] = b
	case kIDList:
		var l []json.RawMessage
		if json.Unmarshal(raw, &l) != nil {
			return invalid("%s must be a list of integers", name)
		}
		ids := make([]int64, 0, len(l))
		for i, r := range l {
			v, ok := parseInt(r, true)
			if !ok {
				return invalid("%s[%d] must be a 64-bit integer (JSON number or decimal string)", name, i)
			}
			ids = append(ids, v)
		}
		p.lists[name] = ids
	}
	return nil
}

// parseInt reads a JSON integer (and, with quoted, a decimal string) as a 64-bit integer
// with every digit (no float64 round trip).
func parseInt(raw json.RawMessage, quoted bool) (int64, bool) {
	text := string(raw)
	if len(raw) > 0 && raw[0] == '"' {
		if !quoted || json.Unmarshal(raw, &text) != nil {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(text, 10, 64)
	return v, err == nil
}

func invalid(format string, a ...any) *jobs.Error {
	return jobs.Errorf(jobs.KindInvalidJob, fmt.Sprintf(format, a...))
}

// parseParams decodes a request: a JSON object (or nothing) with app and the call's
// fields. A field given as null counts as not given; an unknown field is an error.
func parseParams(data []byte, fields []string) (*params, *jobs.Error) {
	p := &params{app: config.DefaultApp, str: map[string]string{}, num: map[string]int64{}, flag: map[string]bool{}, lists: map[string][]int64{}}
	if len(bytes.TrimSpace(data)) == 0 {
		return p, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return nil, invalid("the request must be a JSON object with app and the call's fields")
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		raw := m[k]
		switch {
		case k == "app":
			if string(raw) != "null" && (json.Unmarshal(raw, &p.app) != nil || p.app == "") {
				return nil, invalid("app must be the non-empty name of a configured app")
			}
		case !slices.Contains(fields, k):
			return nil, invalid("unknown field %q (this call takes app, %s)", k, strings.Join(fields, ", "))
		case string(raw) != "null":
			if err := p.parseField(k, raw); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// required returns a string field that must be given and not be empty.
func (p *params) required(name string) (string, *jobs.Error) {
	v, ok := p.str[name]
	if !ok {
		return "", invalid("%s is required", name)
	}
	if v == "" {
		return "", invalid("%s must not be empty", name)
	}
	return v, nil
}

// topic returns the required topicId.
func (p *params) topic() (int64, *jobs.Error) {
	v, ok := p.num["topicId"]
	if !ok {
		return 0, invalid("topicId is required")
	}
	return v, nil
}

func checkExtra(p *params) *jobs.Error {
	if v, ok := p.str["extra"]; ok && len(v) > MaxExtraBytes {
		return invalid("extra must be at most %d bytes (10 KB), got %d", MaxExtraBytes, len(v))
	}
	return nil
}

// checkAccount refuses accounts that cannot travel in an HTTP header: control characters.
// (Non-ASCII accounts travel base64-encoded, see setAccount.)
func checkAccount(name, v string) *jobs.Error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return invalid("%s must not contain control characters", name)
		}
	}
	return nil
}

// requiredAccount checks the required account and sets it as the appAccount header.
func requiredAccount(r *upstream.Request, p *params) *jobs.Error {
	v, err := p.required("account")
	if err != nil {
		return err
	}
	if err := checkAccount("account", v); err != nil {
		return err
	}
	setAccount(r.Header, v)
	return nil
}

// setAccount sets the appAccount header: as given when it is ASCII, base64-encoded
// together with appAccountEncode: base64 otherwise (mimc-topic.txt). Header names are
// sent with exactly this spelling.
func setAccount(h http.Header, account string) {
	for i := 0; i < len(account); i++ {
		if account[i] >= 0x80 {
			h["appAccount"] = []string{base64.StdEncoding.EncodeToString([]byte(account))}
			h["appAccountEncode"] = []string{"base64"}
			return
		}
	}
	h["appAccount"] = []string{account}
}

func setTopic(h http.Header, id int64)    { h["topicId"] = []string{strconv.FormatInt(id, 10)} }
func setStartUUID(h http.Header, v int64) { h["startUuid"] = []string{strconv.FormatInt(v, 10)} }

func setBody(r *upstream.Request, v any) {
	b, err := json.Marshal(v)
	if err != nil { // the bodies are structs of strings and integers
		panic(err)
	}
	r.Body = b
}

// optional returns a string field, nil when not given.
func (p *params) optional(name string) *string {
	if v, ok := p.str[name]; ok {
		return &v
	}
	return nil
}

func buildCreate(r *upstream.Request, p *params) *jobs.Error {
	if err := requiredAccount(r, p); err != nil {
		return err
	}
	name, err := p.required("topicName")
	if err != nil {
		return err
	}
	if err := checkExtra(p); err != nil {
		return err
	}
	setBody(r, struct {
		TopicName string  `json:"topicName"`
		Extra     *string `json:"extra,omitempty"`
	}{name, p.optional("extra")})
	return nil
}

func buildUpdate(r *upstream.Request, p *params) *jobs.Error {
	if err := requiredAccount(r, p); err != nil {
		return err
	}
	id, err := p.topic()
	if err != nil {
		return err
	}
	name, owner, extra := p.optional("topicName"), p.optional("ownerAccount"), p.optional("extra")
	if name == nil && owner == nil && extra == nil {
		return invalid("topic.update needs at least one of topicName, ownerAccount, extra")
	}
	for _, f := range []string{"topicName", "ownerAccount"} {
		if v := p.optional(f); v != nil && *v == "" {
			return invalid("%s must not be empty", f)
		}
	}
	if err := checkExtra(p); err != nil {
		return err
	}
	setBody(r, struct {
		TopicID      jobs.TopicID `json:"topicId"`
		TopicName    *string      `json:"topicName,omitempty"`
		OwnerAccount *string      `json:"ownerAccount,omitempty"`
		Extra        *string      `json:"extra,omitempty"`
	}{jobs.TopicID(id), name, owner, extra})
	return nil
}

func buildDelete(r *upstream.Request, p *params) *jobs.Error {
	id, err := p.topic()
	if err != nil {
		return err
	}
	setTopic(r.Header, id)
	if _, ok := p.str["account"]; ok { // the owner: only the owner may delete a topic
		return requiredAccount(r, p)
	}
	return nil
}

func buildMembers(r *upstream.Request, p *params) *jobs.Error {
	id, err := p.topic()
	if err != nil {
		return err
	}
	start := p.num["startUuid"]
	if start < 0 {
		return invalid("startUuid must not be negative")
	}
	setTopic(r.Header, id)
	setStartUUID(r.Header, start)
	return nil
}

func buildList(r *upstream.Request, p *params) *jobs.Error { return requiredAccount(r, p) }

// buildTopicOnly serves the calls that take just the topicId header (info, online).
func buildTopicOnly(r *upstream.Request, p *params) *jobs.Error {
	id, err := p.topic()
	if err != nil {
		return err
	}
	setTopic(r.Header, id)
	return nil
}

func buildForbid(r *upstream.Request, p *params) *jobs.Error {
	id, err := p.topic()
	if err != nil {
		return err
	}
	user, err := p.required("user")
	if err != nil {
		return err
	}
	secs, ok := p.num["forbidSeconds"]
	if !ok {
		return invalid("forbidSeconds is required (0 lifts the ban)")
	}
	if secs < 0 || secs > MaxForbidSeconds {
		return invalid("forbidSeconds must be between 0 and %d, got %d", MaxForbidSeconds, secs)
	}
	// The doc shows this body's topicId quoted ("$topicid"), unlike the update body's.
	setBody(r, struct {
		TopicID       string `json:"topicId"`
		User          string `json:"user"`
		ForbidSeconds int64  `json:"forbidSeconds"`
	}{strconv.FormatInt(id, 10), user, secs})
	return nil
}

func buildCertificate(r *upstream.Request, p *params) *jobs.Error {
	env, ok := p.num["environment"]
	if !ok {
		env = 1
	}
	if env != 0 && env != 1 {
		return invalid("environment must be 0 (development) or 1 (production), got %d", env)
	}
	provider, ok := p.num["provider"]
	if !ok {
		return invalid("provider is required (1 APNs, 2 Huawei, 3 Xiaomi, 4 Meizu, 5 VIVO, 6 OPPO, 7 FCM)")
	}
	if provider < 1 || provider > 7 {
		return invalid("provider must be between 1 and 7, got %d", provider)
	}
	r.Query = url.Values{}
	r.Query.Set("environment", strconv.FormatInt(env, 10))
	r.Query.Set("provider", strconv.FormatInt(provider, 10))
	return nil
}

func buildTaskDetail(r *upstream.Request, p *params) *jobs.Error {
	ids, ok := p.lists["task_ids"]
	if !ok {
		return invalid("task_ids is required (a non-empty list of task ids)")
	}
	if len(ids) == 0 {
		return invalid("task_ids must not be empty")
	}
	setBody(r, struct {
		List []int64 `json:"list"`
	}{ids})
	return nil
}

// newRequest starts the upstream request of a call. MIMC topic calls authenticate with
// the appId/appKey/appSecret headers; the client adds them and the notify headers.
func (c *call) newRequest() upstream.Request {
	r := upstream.Request{Upstream: c.upstream, Method: c.method, Path: c.path, Header: http.Header{}}
	if c.upstream == jobs.UpstreamMIMC {
		r.Auth = upstream.AuthHeader
	}
	return r
}
