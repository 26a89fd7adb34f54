package sandbox

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Limits of the topic API (mimc-topic).
const (
	// MaxTopicExtra is the most bytes a topic's extra may hold.
	MaxTopicExtra = 10 * 1024
	// MaxForbidSeconds is the longest ban forbidsendmsg accepts: ten years.
	MaxForbidSeconds = 315360000
	// MemberPageSize is the most members one userlist answer holds.
	MemberPageSize = 100

	firstTopicID      = 1<<53 + 1 // not representable as a float64
	firstUUID         = 1<<53 + 1000001
	codeTopicNotFound = 404
	codeNotOwner      = 403
)

// topic is one unlimited group.
type topic struct {
	id        int64
	appID     string
	name      string
	extra     string
	owner     string
	members   map[string]int64 // account → uuid
	online    int
	forbidden map[string]time.Time // account → end of the ban
}

// topicStore holds every app's topics and account uuids.
type topicStore struct {
	mu         sync.Mutex
	nextID     int64
	nextUUID   int64
	uuids      map[string]map[string]int64 // app id → account → uuid
	topics     map[int64]*topic
	deleted    map[int64]string // deleted topic id → app id
	anyDeleted atomic.Bool      // lets pushes skip the lock until a topic is deleted
}

func (t *topicStore) init() {
	t.nextID, t.nextUUID = firstTopicID, firstUUID
	t.uuids = map[string]map[string]int64{}
	t.topics = map[int64]*topic{}
	t.deleted = map[int64]string{}
}

// isDeleted reports whether app deleted topic id through the topic API.
func (t *topicStore) isDeleted(appID string, id int64) bool {
	if !t.anyDeleted.Load() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deleted[id] == appID
}

// uuid returns the uuid of an app's account, allocating it on first sight. t.mu is held.
func (t *topicStore) uuid(appID, account string) int64 {
	m := t.uuids[appID]
	if m == nil {
		m = map[string]int64{}
		t.uuids[appID] = m
	}
	u, ok := m[account]
	if !ok {
		u = t.nextUUID
		t.nextUUID++
		m[account] = u
	}
	return u
}

// get returns an app's live topic. t.mu is held.
func (t *topicStore) get(appID string, id int64) *topic {
	tp := t.topics[id]
	if tp == nil || tp.appID != appID {
		return nil
	}
	return tp
}

// TopicInfo is the state of one topic, for tests.
type TopicInfo struct {
	ID      int64
	AppID   string
	Name    string
	Extra   string
	Owner   string
	Members []string // sorted by uuid
	Online  int
}

// Topic returns the state of a topic created through the topic API and not deleted.
func (s *Server) Topic(topicID int64) (TopicInfo, bool) {
	t := &s.topics
	t.mu.Lock()
	defer t.mu.Unlock()
	tp := t.topics[topicID]
	if tp == nil {
		return TopicInfo{}, false
	}
	info := TopicInfo{ID: tp.id, AppID: tp.appID, Name: tp.name, Extra: tp.extra, Owner: tp.owner, Online: tp.online}
	for _, m := range sortedMembers(tp) {
		info.Members = append(info.Members, m.account)
	}
	return info, true
}

// AddMember makes account a member of a topic created through the topic API (the push
// and topic APIs have no call for joining). It does nothing for an unknown topic.
func (s *Server) AddMember(topicID int64, account string) {
	t := &s.topics
	t.mu.Lock()
	defer t.mu.Unlock()
	if tp := t.topics[topicID]; tp != nil {
		tp.members[account] = t.uuid(tp.appID, account)
	}
}

// SetOnline sets the online user count /api/uctopic/onlineinfo reports for a topic
// created through the topic API. It does nothing for an unknown topic.
func (s *Server) SetOnline(topicID int64, n int) {
	t := &s.topics
	t.mu.Lock()
	defer t.mu.Unlock()
	if tp := t.topics[topicID]; tp != nil {
		tp.online = n
	}
}

// ForbiddenUntil returns when the ban of account from sending to a topic ends, set through
// /api/uctopic/forbidsendmsg, and false when there is none in force.
func (s *Server) ForbiddenUntil(topicID int64, account string) (time.Time, bool) {
	t := &s.topics
	t.mu.Lock()
	defer t.mu.Unlock()
	tp := t.topics[topicID]
	if tp == nil {
		return time.Time{}, false
	}
	until, ok := tp.forbidden[account]
	if !ok || !until.After(time.Now()) {
		return time.Time{}, false
	}
	return until, true
}

type member struct {
	account string
	uuid    int64
}

func sortedMembers(tp *topic) []member {
	ms := make([]member, 0, len(tp.members))
	for a, u := range tp.members {
		ms = append(ms, member{a, u})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].uuid < ms[j].uuid })
	return ms
}

// topicApp checks the appId, appKey and appSecret headers of a topic API call. It answers
// 401 and returns nil when they are wrong.
func (s *Server) topicApp(w http.ResponseWriter, r *http.Request) *mimcApp {
	id, key, secret := r.Header.Get("appId"), r.Header.Get("appKey"), r.Header.Get("appSecret")
	if id == "" || key == "" || secret == "" {
		msg := "appId, appKey and appSecret headers are required"
		if r.Header.Get("token") != "" {
			msg = "token authentication is not supported by the sandbox: use the appId, appKey and appSecret headers"
		}
		writeError(w, http.StatusUnauthorized, 401, msg)
		return nil
	}
	app := s.mimcApps[id]
	if app == nil {
		writeError(w, http.StatusUnauthorized, 401, "unknown appId "+id)
		return nil
	}
	if key != app.AppKey || secret != app.AppSecret {
		writeError(w, http.StatusUnauthorized, 401, "appKey or appSecret is wrong for appId "+id)
		return nil
	}
	return app
}

// callerAccount reads the appAccount header, base64-decoded when appAccountEncode is
// base64. present is false without the header; msg is the message of a 400 answer.
func callerAccount(r *http.Request) (account string, present bool, msg string) {
	v := r.Header.Get("appAccount")
	if v == "" {
		return "", false, ""
	}
	switch enc := r.Header.Get("appAccountEncode"); {
	case strings.EqualFold(enc, "base64"):
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(b) == 0 || !utf8.Valid(b) {
			return "", true, "appAccount is not valid base64 of a UTF-8 account (appAccountEncode: base64)"
		}
		return string(b), true, ""
	case enc != "":
		return "", true, `appAccountEncode must be "base64"`
	}
	for i := 0; i < len(v); i++ {
		if v[i] >= utf8.RuneSelf {
			return "", true, "appAccount has non-ASCII characters: send it base64-encoded with the header appAccountEncode: base64"
		}
	}
	return v, true, ""
}

// topicRequest checks the app credentials and reads the topicId header of a topic API call
// that names a topic by header; it answers the error itself and returns ok false.
func (s *Server) topicRequest(w http.ResponseWriter, r *http.Request) (app *mimcApp, id int64, ok bool) {
	if app = s.topicApp(w, r); app == nil {
		return nil, 0, false
	}
	id, msg := headerTopicID(r)
	if msg != "" {
		badRequest(w, msg)
		return nil, 0, false
	}
	return app, id, true
}

// headerTopicID reads the topicId header.
func headerTopicID(r *http.Request) (int64, string) {
	v := r.Header.Get("topicId")
	if v == "" {
		return 0, "topicId header is required"
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, "topicId header must be a 64-bit integer"
	}
	return id, ""
}

// bodyTopicID reads a topicId field given as a JSON number or a decimal string (the doc
// shows both).
func bodyTopicID(raw json.RawMessage) (int64, string) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, "topicId is required"
	}
	v := string(raw)
	if raw[0] == '"' {
		if json.Unmarshal(raw, &v) != nil {
			return 0, "topicId must be a 64-bit integer"
		}
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, "topicId must be a 64-bit integer"
	}
	return id, ""
}

// decodeBody decodes a JSON object body into v; msg is the message of a 400 answer.
func decodeBody(body []byte, v any) string {
	err := json.Unmarshal(body, v)
	if err == nil {
		return ""
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return te.Field + " must be " + describeType(te.Type)
	}
	return "request body is not a JSON object: " + err.Error()
}

func notFound(w http.ResponseWriter, id int64) {
	writeError(w, http.StatusBadRequest, codeTopicNotFound, "topic "+strconv.FormatInt(id, 10)+" not exist")
}

func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusBadRequest, 400, msg)
}

// topicCreate answers POST /api/uctopic.
func (s *Server) topicCreate(w http.ResponseWriter, r *http.Request, body []byte) {
	app := s.topicApp(w, r)
	if app == nil {
		return
	}
	owner, present, msg := callerAccount(r)
	if msg == "" && !present {
		msg = "appAccount header (the owner) is required"
	}
	if msg != "" {
		badRequest(w, msg)
		return
	}
	var req struct {
		TopicName *string `json:"topicName"`
		Extra     *string `json:"extra"`
	}
	if msg := decodeBody(body, &req); msg != "" {
		badRequest(w, msg)
		return
	}
	if req.TopicName == nil || *req.TopicName == "" {
		badRequest(w, "topicName is required")
		return
	}
	extra := ""
	if req.Extra != nil {
		extra = *req.Extra
	}
	if len(extra) > MaxTopicExtra {
		badRequest(w, "extra is larger than 10 KB")
		return
	}
	t := &s.topics
	t.mu.Lock()
	id := t.nextID
	t.nextID++
	ownerUUID := t.uuid(app.AppID, owner)
	t.topics[id] = &topic{
		id: id, appID: app.AppID, name: *req.TopicName, extra: extra, owner: owner,
		members: map[string]int64{owner: ownerUUID}, forbidden: map[string]time.Time{},
	}
	t.mu.Unlock()
	writeSuccess(w, struct {
		TopicID   int64  `json:"topicId"`
		OwnerUUID int64  `json:"ownerUuid"`
		TopicName string `json:"topicName"`
		Extra     string `json:"extra"`
	}{id, ownerUUID, *req.TopicName, extra})
}

// topicUpdate answers POST /api/uctopic/update: the owner renames the topic, changes its
// extra or hands it to a member.
func (s *Server) topicUpdate(w http.ResponseWriter, r *http.Request, body []byte) {
	app := s.topicApp(w, r)
	if app == nil {
		return
	}
	caller, present, msg := callerAccount(r)
	if msg == "" && !present {
		msg = "appAccount header is required: only the owner may update a topic"
	}
	if msg != "" {
		badRequest(w, msg)
		return
	}
	var req struct {
		TopicID      json.RawMessage `json:"topicId"`
		TopicName    *string         `json:"topicName"`
		OwnerAccount *string         `json:"ownerAccount"`
		Extra        *string         `json:"extra"`
	}
	if msg := decodeBody(body, &req); msg != "" {
		badRequest(w, msg)
		return
	}
	id, msg := bodyTopicID(req.TopicID)
	switch {
	case msg != "":
	case req.TopicName == nil && req.OwnerAccount == nil && req.Extra == nil:
		msg = "one of topicName, ownerAccount and extra is required"
	case req.TopicName != nil && *req.TopicName == "":
		msg = "topicName must not be empty"
	case req.OwnerAccount != nil && *req.OwnerAccount == "":
		msg = "ownerAccount must not be empty"
	case req.Extra != nil && len(*req.Extra) > MaxTopicExtra:
		msg = "extra is larger than 10 KB"
	}
	if msg != "" {
		badRequest(w, msg)
		return
	}
	t := &s.topics
	t.mu.Lock()
	tp := t.get(app.AppID, id)
	if tp == nil {
		t.mu.Unlock()
		notFound(w, id)
		return
	}
	if tp.owner != caller {
		t.mu.Unlock()
		writeError(w, http.StatusBadRequest, codeNotOwner, caller+" is not the owner of topic "+strconv.FormatInt(id, 10))
		return
	}
	if req.OwnerAccount != nil {
		if _, ok := tp.members[*req.OwnerAccount]; !ok {
			t.mu.Unlock()
			badRequest(w, "ownerAccount "+*req.OwnerAccount+" is not a member of topic "+strconv.FormatInt(id, 10))
			return
		}
		tp.owner = *req.OwnerAccount
	}
	if req.TopicName != nil {
		tp.name = *req.TopicName
	}
	if req.Extra != nil {
		tp.extra = *req.Extra
	}
	data := struct {
		TopicID      int64  `json:"topicId"`
		OwnerUUID    int64  `json:"ownerUuid"`
		OwnerAccount string `json:"ownerAccount"`
		TopicName    string `json:"topicName"`
		Extra        string `json:"extra"`
	}{tp.id, tp.members[tp.owner], tp.owner, tp.name, tp.extra}
	t.mu.Unlock()
	writeSuccess(w, data)
}

// topicDelete answers DELETE /api/uctopic. With an appAccount header the caller must be
// the owner; without one the app's credentials suffice.
func (s *Server) topicDelete(w http.ResponseWriter, r *http.Request, _ []byte) {
	app, id, ok := s.topicRequest(w, r)
	if !ok {
		return
	}
	caller, present, msg := callerAccount(r)
	if msg != "" {
		badRequest(w, msg)
		return
	}
	t := &s.topics
	t.mu.Lock()
	tp := t.get(app.AppID, id)
	if tp == nil {
		t.mu.Unlock()
		notFound(w, id)
		return
	}
	if present && tp.owner != caller {
		t.mu.Unlock()
		writeError(w, http.StatusBadRequest, codeNotOwner, caller+" is not the owner of topic "+strconv.FormatInt(id, 10))
		return
	}
	delete(t.topics, id)
	t.deleted[id] = app.AppID
	t.anyDeleted.Store(true)
	t.mu.Unlock()
	writeSuccess(w, nil)
}

// topicUserList answers GET /api/uctopic/userlist: one page of members with a uuid greater
// than startUuid.
func (s *Server) topicUserList(w http.ResponseWriter, r *http.Request, _ []byte) {
	app, id, ok := s.topicRequest(w, r)
	if !ok {
		return
	}
	var start int64
	if v := r.Header.Get("startUuid"); v != "" {
		var err error
		if start, err = strconv.ParseInt(v, 10, 64); err != nil {
			badRequest(w, "startUuid header must be a 64-bit integer")
			return
		}
	}
	type memberJSON struct {
		AppAccout string `json:"appAccout"` // sic, as the doc spells it
		UUID      string `json:"uuid"`
		AppID     string `json:"appId"`
	}
	t := &s.topics
	t.mu.Lock()
	tp := t.get(app.AppID, id)
	if tp == nil {
		t.mu.Unlock()
		notFound(w, id)
		return
	}
	all := sortedMembers(tp)
	t.mu.Unlock()
	i := sort.Search(len(all), func(i int) bool { return all[i].uuid > start })
	page := all[i:]
	end := len(page) <= MemberPageSize
	if !end {
		page = page[:MemberPageSize]
	}
	members := make([]memberJSON, len(page))
	for j, m := range page {
		members[j] = memberJSON{m.account, strconv.FormatInt(m.uuid, 10), app.AppID}
	}
	writeSuccess(w, struct {
		Count   string       `json:"count"`
		Members []memberJSON `json:"members"`
		IsEnd   string       `json:"isEnd"`
	}{strconv.Itoa(len(members)), members, strconv.FormatBool(end)})
}

// topicTopics answers GET /api/uctopic/topics: the ids of the topics the appAccount is a
// member of, ascending.
func (s *Server) topicTopics(w http.ResponseWriter, r *http.Request, _ []byte) {
	app := s.topicApp(w, r)
	if app == nil {
		return
	}
	account, present, msg := callerAccount(r)
	if msg == "" && !present {
		msg = "appAccount header is required"
	}
	if msg != "" {
		badRequest(w, msg)
		return
	}
	ids := []int64{}
	t := &s.topics
	t.mu.Lock()
	for id, tp := range t.topics {
		if _, ok := tp.members[account]; ok && tp.appID == app.AppID {
			ids = append(ids, id)
		}
	}
	t.mu.Unlock()
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	writeSuccess(w, ids)
}

// topicInfo answers GET /api/uctopic/topic.
func (s *Server) topicInfo(w http.ResponseWriter, r *http.Request, _ []byte) {
	app, id, ok := s.topicRequest(w, r)
	if !ok {
		return
	}
	t := &s.topics
	t.mu.Lock()
	tp := t.get(app.AppID, id)
	if tp == nil {
		t.mu.Unlock()
		notFound(w, id)
		return
	}
	data := struct {
		TopicID      string `json:"topicId"`
		TopicName    string `json:"topicName"`
		OwnerUUID    string `json:"ownerUuid"`
		OwnerAccount string `json:"ownerAccount"`
		MemberNum    string `json:"memberNum"`
	}{strconv.FormatInt(id, 10), tp.name, strconv.FormatInt(tp.members[tp.owner], 10), tp.owner, strconv.Itoa(len(tp.members))}
	t.mu.Unlock()
	writeSuccess(w, data)
}

// topicOnline answers GET /api/uctopic/onlineinfo.
func (s *Server) topicOnline(w http.ResponseWriter, r *http.Request, _ []byte) {
	app, id, ok := s.topicRequest(w, r)
	if !ok {
		return
	}
	t := &s.topics
	t.mu.Lock()
	tp := t.get(app.AppID, id)
	if tp == nil {
		t.mu.Unlock()
		notFound(w, id)
		return
	}
	n := tp.online
	t.mu.Unlock()
	writeSuccess(w, struct {
		TopicID string `json:"topicId"`
		UserCnt string `json:"userCnt"`
	}{strconv.FormatInt(id, 10), strconv.Itoa(n)})
}

// topicForbid answers POST /api/uctopic/forbidsendmsg: bans user from sending to the topic
// for forbidSeconds (0 lifts the ban). With an appAccount header the caller must be the
// owner.
func (s *Server) topicForbid(w http.ResponseWriter, r *http.Request, body []byte) {
	app := s.topicApp(w, r)
	if app == nil {
		return
	}
	caller, present, msg := callerAccount(r)
	if msg != "" {
		badRequest(w, msg)
		return
	}
	var req struct {
		TopicID       json.RawMessage `json:"topicId"`
		User          *string         `json:"user"`
		ForbidSeconds json.RawMessage `json:"forbidSeconds"`
	}
	if msg := decodeBody(body, &req); msg != "" {
		badRequest(w, msg)
		return
	}
	id, msg := bodyTopicID(req.TopicID)
	var secs int64
	if msg == "" {
		switch {
		case req.User == nil || *req.User == "":
			msg = "user is required"
		case len(req.ForbidSeconds) == 0 || string(req.ForbidSeconds) == "null":
			msg = "forbidSeconds is required"
		default:
			var err error
			secs, err = strconv.ParseInt(string(req.ForbidSeconds), 10, 64)
			if err != nil || secs < 0 || secs > MaxForbidSeconds {
				msg = "forbidSeconds must be an integer from 0 to 315360000"
			}
		}
	}
	if msg != "" {
		badRequest(w, msg)
		return
	}
	t := &s.topics
	t.mu.Lock()
	tp := t.get(app.AppID, id)
	if tp == nil {
		t.mu.Unlock()
		notFound(w, id)
		return
	}
	if present && tp.owner != caller {
		t.mu.Unlock()
		writeError(w, http.StatusBadRequest, codeNotOwner, caller+" is not the owner of topic "+strconv.FormatInt(id, 10))
		return
	}
	if secs == 0 {
		delete(tp.forbidden, *req.User)
	} else {
		tp.forbidden[*req.User] = time.Now().Add(time.Duration(secs) * time.Second)
	}
	t.mu.Unlock()
	writeSuccess(w, "")
}
