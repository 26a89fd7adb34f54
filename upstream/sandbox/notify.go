package sandbox

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Notify answer codes (notify-push, contract §10) the sandbox gives.
const (
	// CodeBadParam is the notify code of a bad request parameter.
	CodeBadParam = 10002
	// CodeTokenMissing is the notify code of a request without access-token.
	CodeTokenMissing = 10003
	// CodeTokenInvalid is the notify code of a wrong access-token.
	CodeTokenInvalid = 10008
	// CodeTooManyTargets is the notify code of an audience list longer than MaxAudience.
	CodeTooManyTargets = 12005
	// CodeUnknownApp is the notify code of an app_id that does not exist.
	CodeUnknownApp = 40000
)

// MaxAudience is the longest audience list /push/notify accepts.
const MaxAudience = 500

// Devices a task targets per audience entry (see the package doc).
const (
	devicesAll    = 1000
	devicesPerTag = 20
	statsSteps    = 3      // steps until "sent" reaches the target
	maxTasks      = 100000 // tasks kept; the oldest are forgotten first
)

// NotifyChannels lists the channels of notify task statistics, in the order of
// notify-push §4.3.
var NotifyChannels = []string{"apns", "fcm", "flyme", "huawei", "mxpush", "oppo", "vivo", "xiaomi"}

const chMXPush = 4

// vendorChannels are the indices of NotifyChannels other than mxpush.
var vendorChannels = []int{0, 1, 2, 3, 5, 6, 7}

// ChannelStats is one channel's counters of a notify task.
type ChannelStats struct {
	Target   int64 `json:"target"`
	Sent     int64 `json:"sent"`
	Received int64 `json:"received"`
}

type notifyTask struct {
	id        int64
	appID     string
	requestID string
	created   int64 // Server.now()
	targets   [8]int64
}

type dedupKey struct{ appID, requestID string }

// notifyStore holds the notify tasks and the request ids seen.
type notifyStore struct {
	mu         sync.Mutex
	nextID     int64
	tasks      map[int64]*notifyTask
	order      []int64 // task ids by creation, for forgetting the oldest
	dedup      map[dedupKey]int64
	boolAnswer atomic.Bool
}

func (n *notifyStore) init() {
	n.nextID = 1
	n.tasks = map[int64]*notifyTask{}
	n.dedup = map[dedupKey]int64{}
}

// SetNotifyBoolAnswer makes /push/notify answer success as {"code":200,"data":true}
// (without a task id, a shape the upstream also uses) when on is true, and as
// {"code":200,"data":{"task_id":N}} when it is false (the default). Tasks are created
// either way.
func (s *Server) SetNotifyBoolAnswer(on bool) { s.notify.boolAnswer.Store(on) }

// NotifyTask returns the current counters of a task per channel name.
func (s *Server) NotifyTask(taskID int64) (map[string]ChannelStats, bool) {
	s.notify.mu.Lock()
	tk := s.notify.tasks[taskID]
	s.notify.mu.Unlock()
	if tk == nil {
		return nil, false
	}
	c := s.taskCounters(tk)
	out := make(map[string]ChannelStats, len(NotifyChannels))
	for i, name := range NotifyChannels {
		out[name] = c[i]
	}
	return out, true
}

// taskCounters computes a task's counters now: "sent" grows by a third of the target per
// StatsStep, "received" follows one step behind.
func (s *Server) taskCounters(tk *notifyTask) [8]ChannelStats {
	k := (s.now() - tk.created) / int64(s.cfg.StatsStep)
	if k > statsSteps+1 {
		k = statsSteps + 1
	}
	var c [8]ChannelStats
	for i, t := range tk.targets {
		c[i] = ChannelStats{Target: t, Sent: progress(t, k), Received: progress(t, k-1)}
	}
	return c
}

func progress(target, step int64) int64 {
	if step <= 0 {
		return 0
	}
	v := (target*step + statsSteps - 1) / statsSteps
	return min(v, target)
}

// notifyApp checks the access-token and app_id headers. It answers the notify error and
// returns nil when they are wrong. group_id and user_id are accepted and ignored.
func (s *Server) notifyAuth(w http.ResponseWriter, r *http.Request) *notifyApp {
	token := r.Header.Get("access-token")
	if token == "" {
		writeError(w, http.StatusOK, CodeTokenMissing, "access-token missing")
		return nil
	}
	id := r.Header.Get("app_id")
	app := s.notifyApps[id]
	if app == nil {
		writeError(w, http.StatusOK, CodeUnknownApp, "app_id "+strconv.Quote(id)+" does not exist")
		return nil
	}
	if token != app.AccessToken {
		writeError(w, http.StatusOK, CodeTokenInvalid, "access-token invalid")
		return nil
	}
	return app
}

func badParam(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusOK, CodeBadParam, msg)
}

// notifyPush answers POST /push/notify.
func (s *Server) notifyPush(w http.ResponseWriter, r *http.Request, body []byte) {
	app := s.notifyAuth(w, r)
	if app == nil {
		return
	}
	var req struct {
		Audience json.RawMessage `json:"audience"`
		Setting  json.RawMessage `json:"setting"`
		Message  json.RawMessage `json:"message"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		badParam(w, "request body is not a JSON object: "+err.Error())
		return
	}
	devices, code, msg := audienceDevices(req.Audience)
	if code != 0 {
		writeError(w, http.StatusOK, code, msg)
		return
	}
	setting, msg := checkSetting(req.Setting)
	if msg == "" {
		msg = checkNotifyMessage(req.Message)
	}
	if msg != "" {
		badParam(w, msg)
		return
	}
	if !app.window.admit(s.now(), 1) {
		writeError(w, http.StatusTooManyRequests, 429, "rate limit exceeded")
		return
	}
	id := s.createTask(app.AppID, devices, setting)
	if s.notify.boolAnswer.Load() {
		writeRaw(w, http.StatusOK, []byte(`{"code":200,"message":null,"data":true}`))
		return
	}
	b := make([]byte, 0, 64)
	b = append(b, `{"code":200,"message":null,"data":{"task_id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `}}`...)
	writeRaw(w, http.StatusOK, b)
}

// createTask returns the task of a request id seen before, or creates a task.
func (s *Server) createTask(appID string, devices int64, st setting) int64 {
	n := &s.notify
	n.mu.Lock()
	defer n.mu.Unlock()
	key := dedupKey{appID, st.requestID}
	if st.requestID != "" {
		if id, ok := n.dedup[key]; ok {
			return id
		}
	}
	id := n.nextID
	n.nextID++
	tk := &notifyTask{id: id, appID: appID, requestID: st.requestID, created: s.now(), targets: spread(id, devices, st.strategy)}
	n.tasks[id] = tk
	n.order = append(n.order, id)
	if st.requestID != "" {
		n.dedup[key] = id
	}
	for len(n.tasks) > maxTasks {
		old := n.tasks[n.order[0]]
		n.order = n.order[1:]
		if old != nil {
			delete(n.tasks, old.id)
			if old.requestID != "" {
				delete(n.dedup, dedupKey{old.appID, old.requestID})
			}
		}
	}
	return id
}

// spread divides a task's devices over the channels: half (rounded up) to mxpush unless
// the strategy excludes it, the rest over three vendor channels chosen by the task id.
func spread(id, devices int64, strategy string) [8]int64 {
	var t [8]int64
	mx := (devices + 1) / 2
	switch strategy {
	case "mxpush_only":
		mx = devices
	case "ospush_only":
		mx = 0
	}
	t[chMXPush] = mx
	rest := devices - mx
	for i := int64(0); i < 3; i++ {
		share := rest / 3
		if i < rest%3 {
			share++
		}
		t[vendorChannels[(id+i)%int64(len(vendorChannels))]] += share
	}
	return t
}

// audienceDevices validates an audience and returns how many devices it targets, or a
// notify code and message.
func audienceDevices(raw json.RawMessage) (int64, int, string) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, CodeBadParam, "audience is required"
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil || s != "all" {
			return 0, CodeBadParam, `audience must be "all" or an object with one of tag, alias, user_id, push_token`
		}
		return devicesAll, 0, ""
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return 0, CodeBadParam, `audience must be "all" or an object with one of tag, alias, user_id, push_token`
	}
	if len(obj) != 1 {
		return 0, CodeBadParam, "audience must have exactly one of tag, alias, user_id, push_token"
	}
	for key, val := range obj {
		switch key {
		case "tag", "alias", "user_id", "push_token":
		default:
			return 0, CodeBadParam, "audience." + key + " is not one of tag, alias, user_id, push_token"
		}
		var list []json.RawMessage
		if json.Unmarshal(val, &list) != nil || len(list) == 0 {
			return 0, CodeBadParam, "audience." + key + " must be a non-empty list"
		}
		if len(list) > MaxAudience {
			return 0, CodeTooManyTargets, "audience." + key + " has " + strconv.Itoa(len(list)) + " targets, more than 500"
		}
		for i, item := range list {
			var ok bool
			if key == "user_id" {
				_, err := strconv.ParseInt(string(item), 10, 64)
				ok = err == nil
			} else {
				var s string
				ok = json.Unmarshal(item, &s) == nil && s != ""
			}
			if !ok {
				what := "a non-empty string"
				if key == "user_id" {
					what = "an integer"
				}
				return 0, CodeBadParam, "audience." + key + "[" + strconv.Itoa(i) + "] must be " + what
			}
		}
		if key == "tag" {
			return int64(len(list)) * devicesPerTag, 0, ""
		}
		return int64(len(list)), 0, ""
	}
	return 0, CodeBadParam, "audience is required" // not reached
}

// setting is what the sandbox keeps of a notify setting.
type setting struct {
	requestID string
	strategy  string
}

func checkSetting(raw json.RawMessage) (setting, string) {
	if len(raw) == 0 || string(raw) == "null" {
		return setting{}, ""
	}
	var st struct {
		RequestID            *string  `json:"request_id"`
		DistributionStrategy *string  `json:"distribution_strategy"`
		OSPushSequence       []string `json:"ospush_sequence"`
	}
	if raw[0] != '{' {
		return setting{}, "setting must be an object"
	}
	if msg := decodeBody(raw, &st); msg != "" {
		return setting{}, "setting." + msg
	}
	var out setting
	if st.RequestID != nil {
		out.requestID = *st.RequestID
	}
	if st.DistributionStrategy != nil {
		switch *st.DistributionStrategy {
		case "", "combined", "mxpush_only", "ospush_only":
			out.strategy = *st.DistributionStrategy
		default:
			return setting{}, "setting.distribution_strategy must be combined, mxpush_only or ospush_only"
		}
	}
	for i, v := range st.OSPushSequence {
		switch v {
		case "ups", "fcm", "huawei", "xiaomi", "oppo", "vivo", "meizu":
		default:
			return setting{}, "setting.ospush_sequence[" + strconv.Itoa(i) + "] must be one of ups, fcm, huawei, xiaomi, oppo, vivo, meizu"
		}
	}
	return out, ""
}

// vendorBlock is the union of a message's android and vendor blocks.
type vendorBlock struct {
	Sound          *string `json:"sound"`
	ChannelID      *string `json:"channel_id"`
	ClickAction    *string `json:"click_action"`
	Intent         *string `json:"intent"`
	BadgeClass     *string `json:"badge_class"`
	PushMode       *int    `json:"push_mode"`
	Classification *int    `json:"classification"`
}

type notifyMessage struct {
	Type          *string         `json:"type"`
	Title         *string         `json:"title"`
	Body          *string         `json:"body"`
	AttachmentURL *string         `json:"attachment_url"`
	BigText       *string         `json:"big_text"`
	Badge         *string         `json:"badge"`
	Ext           json.RawMessage `json:"ext"`
	ShowBeginTime *int64          `json:"show_begin_time"`
	ShowEndTime   *int64          `json:"show_end_time"`
	IOS           *struct {
		Sound            *string `json:"sound"`
		ContentAvailable *bool   `json:"content_available"`
		MutableContent   *bool   `json:"mutable_content"`
		Category         *string `json:"category"`
		ThreadID         *string `json:"thread_id"`
		Subtitle         *string `json:"subtitle"`
		APNSCollapseID   *string `json:"apns_collapse_id"`
	} `json:"ios"`
	Android *vendorBlock `json:"android"`
	Huawei  *vendorBlock `json:"huawei"`
	Xiaomi  *vendorBlock `json:"xiaomi"`
	OPPO    *vendorBlock `json:"oppo"`
	Vivo    *vendorBlock `json:"vivo"`
	Flyme   *vendorBlock `json:"flyme"`
	FCM     *vendorBlock `json:"fcm"`
}

// checkNotifyMessage validates a notify message; it returns the message of a 10002 answer.
func checkNotifyMessage(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var m notifyMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return "message." + te.Field + " must be " + describeType(te.Type)
		}
		return "message must be an object"
	}
	typ := ""
	if m.Type != nil {
		typ = *m.Type
	}
	switch typ {
	case "", "text", "cmd":
	case "image":
		if m.AttachmentURL == nil || !isImageURL(*m.AttachmentURL) {
			return "message.attachment_url must be an image URL ending in .jpg, .jpeg or .png for an image message"
		}
	default:
		return "message.type must be text, image or cmd"
	}
	if m.Badge != nil && !isBadge(*m.Badge) {
		return `message.badge must be a number or "+" and a number`
	}
	if len(m.Ext) > 0 && string(m.Ext) != "null" && m.Ext[0] != '{' {
		return "message.ext must be an object"
	}
	vendors := []struct {
		name string
		b    *vendorBlock
	}{{"android", m.Android}, {"huawei", m.Huawei}, {"xiaomi", m.Xiaomi}, {"oppo", m.OPPO}, {"vivo", m.Vivo}, {"flyme", m.Flyme}, {"fcm", m.FCM}}
	for _, v := range vendors {
		if v.b == nil {
			continue
		}
		if v.b.ClickAction != nil {
			switch *v.b.ClickAction {
			case "", "open_app":
			case "intent":
				if v.b.Intent == nil || *v.b.Intent == "" {
					return "message." + v.name + ".intent is required with click_action intent"
				}
			default:
				return "message." + v.name + ".click_action must be intent or open_app"
			}
		}
		for _, f := range []struct {
			name string
			v    *int
		}{{"push_mode", v.b.PushMode}, {"classification", v.b.Classification}} {
			if f.v != nil && *f.v != 0 && *f.v != 1 {
				return "message." + v.name + "." + f.name + " must be 0 or 1"
			}
		}
	}
	return ""
}

func isImageURL(u string) bool {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	u = strings.ToLower(u)
	return strings.HasSuffix(u, ".jpg") || strings.HasSuffix(u, ".jpeg") || strings.HasSuffix(u, ".png")
}

func isBadge(b string) bool {
	b = strings.TrimPrefix(b, "+")
	if b == "" {
		return false
	}
	for i := 0; i < len(b); i++ {
		if b[i] < '0' || b[i] > '9' {
			return false
		}
	}
	return true
}

// notifyTaskDetail answers POST /push/task/detail with the counters of the listed tasks of
// the app; unknown ids are left out.
func (s *Server) notifyTaskDetail(w http.ResponseWriter, r *http.Request, body []byte) {
	app := s.notifyAuth(w, r)
	if app == nil {
		return
	}
	var req struct {
		List []json.RawMessage `json:"list"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		badParam(w, "request body must be {\"list\": [task ids]}")
		return
	}
	if req.List == nil {
		badParam(w, "list is required")
		return
	}
	ids := make([]int64, len(req.List))
	for i, raw := range req.List {
		id, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			badParam(w, "list["+strconv.Itoa(i)+"] must be an integer task id")
			return
		}
		ids[i] = id
	}
	tasks := make([]*notifyTask, 0, len(ids))
	s.notify.mu.Lock()
	for _, id := range ids {
		if tk := s.notify.tasks[id]; tk != nil && tk.appID == app.AppID {
			tasks = append(tasks, tk)
		}
	}
	s.notify.mu.Unlock()
	out := make([]byte, 0, 64+len(tasks)*400)
	out = append(out, `{"code":200,"message":null,"data":[`...)
	for i, tk := range tasks {
		if i > 0 {
			out = append(out, ',')
		}
		c := s.taskCounters(tk)
		out = append(out, '{')
		for j, name := range NotifyChannels {
			for _, f := range []struct {
				suffix string
				v      int64
			}{{"_received", c[j].Received}, {"_sent", c[j].Sent}, {"_target", c[j].Target}} {
				out = append(out, '"')
				out = append(out, name...)
				out = append(out, f.suffix...)
				out = append(out, `":`...)
				out = strconv.AppendInt(out, f.v, 10)
				out = append(out, ',')
			}
		}
		out = append(out, `"task_id":`...)
		out = strconv.AppendInt(out, tk.id, 10)
		out = append(out, '}')
	}
	out = append(out, `]}`...)
	writeRaw(w, http.StatusOK, out)
}

var certificateProviders = [...]string{1: "APNS", 2: "Huawei", 3: "Xiaomi", 4: "Meizu", 5: "VIVO", 6: "OPPO", 7: "FCM"}

// notifyCertificate answers GET /push/certificate?environment=0|1&provider=1..7 with fake
// values.
func (s *Server) notifyCertificate(w http.ResponseWriter, r *http.Request, _ []byte) {
	app := s.notifyAuth(w, r)
	if app == nil {
		return
	}
	q := r.URL.Query()
	env := q.Get("environment")
	envName := ""
	switch env {
	case "", "1":
		envName = "production"
	case "0":
		envName = "development"
	default:
		badParam(w, "environment must be 0 (development) or 1 (production)")
		return
	}
	p, err := strconv.Atoi(q.Get("provider"))
	if err != nil || p < 1 || p >= len(certificateProviders) {
		badParam(w, "provider must be an integer from 1 to 7")
		return
	}
	name := certificateProviders[p]
	slug := url.PathEscape(strings.ToLower(name)) + "-" + envName
	writeData(w, nil, struct {
		AppID       string `json:"app_id"`
		AppKey      string `json:"app_key"`
		AppSecret   string `json:"app_secret"`
		Certificate string `json:"certificate"`
		Name        string `json:"name"`
	}{
		AppID:       "sandbox-" + slug + "-app-id",
		AppKey:      "sandbox-" + slug + "-app-key",
		AppSecret:   "sandbox-" + slug + "-app-secret",
		Certificate: "-----BEGIN CERTIFICATE-----\nU0FOREJPWCBDRVJUSUZJQ0FURQ==\n-----END CERTIFICATE-----\n",
		Name:        "sandbox " + name + " certificate (" + envName + ")",
	})
}
