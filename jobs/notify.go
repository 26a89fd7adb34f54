package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxAudience is the most targets one notify call may have (notify-push §4.2). A longer
// audience list is split by the worker into calls of at most MaxAudience targets.
const MaxAudience = 500

// MaxNotifyRequestID is the longest setting.request_id, in characters, a notify payload may set.
const MaxNotifyRequestID = 128

// AudienceAll is the notify audience of every device: NotifyPayload{Audience: AudienceAll}.
const AudienceAll = "all"

// Notify message types (message.type); empty means MessageText.
const (
	MessageText  = "text"
	MessageImage = "image"
	MessageCmd   = "cmd" // pass-through message, not shown in the notification bar
)

// Notify distribution strategies (setting.distribution_strategy); empty means combined.
const (
	DistributionCombined   = "combined"    // MX push first, vendor channels for offline devices
	DistributionMXPushOnly = "mxpush_only" // MX push channel only
	DistributionOSPushOnly = "ospush_only" // vendor channels only
)

// Vendor click actions (message.<vendor>.click_action).
const (
	ClickActionIntent  = "intent"   // open the page named by intent; intent is then required
	ClickActionOpenApp = "open_app" // open the app's main page
)

// NotifyPayload is the payload of a notify job: the body of POST /push/notify without
// credentials.
type NotifyPayload struct {
	// Audience is AudienceAll or a NotifyAudience (see AudienceTags and its siblings).
	Audience any            `json:"audience"`
	Setting  *NotifySetting `json:"setting,omitempty"`
	Message  NotifyMessage  `json:"message"`
}

// JobType returns Notify.
func (NotifyPayload) JobType() Type { return Notify }

// NotifyAudience is a notify audience given as a list of targets: set exactly one field.
// Lists longer than MaxAudience are split by the worker.
type NotifyAudience struct {
	Tag       []string `json:"tag,omitempty"`
	Alias     []string `json:"alias,omitempty"`
	UserID    []int64  `json:"user_id,omitempty"`
	PushToken []string `json:"push_token,omitempty"`
}

// AudienceTags returns the audience of the devices with any of the tags.
func AudienceTags(tags ...string) NotifyAudience { return NotifyAudience{Tag: tags} }

// AudienceAliases returns the audience of the devices with any of the aliases.
func AudienceAliases(aliases ...string) NotifyAudience { return NotifyAudience{Alias: aliases} }

// AudienceUserIDs returns the audience of the devices of any of the users.
func AudienceUserIDs(ids ...int64) NotifyAudience { return NotifyAudience{UserID: ids} }

// AudiencePushTokens returns the audience of the devices with any of the push tokens.
func AudiencePushTokens(tokens ...string) NotifyAudience {
	return NotifyAudience{PushToken: tokens}
}

// NotifySetting is the setting object of a notify payload. When RequestID is empty the
// worker sets it to the job's request id (with "#<chunk index>" appended when the audience
// is split), so that the upstream deduplicates a call sent twice.
type NotifySetting struct {
	RequestID            string   `json:"request_id,omitempty"`
	DistributionStrategy string   `json:"distribution_strategy,omitempty"`
	OSPushSequence       []string `json:"ospush_sequence,omitempty"` // ups, fcm, huawei, xiaomi, oppo, vivo, meizu
}

// NotifyMessage is the message object of a notify payload.
type NotifyMessage struct {
	Type          string `json:"type,omitempty"` // MessageText, MessageImage or MessageCmd
	Title         string `json:"title,omitempty"`
	Body          string `json:"body,omitempty"`
	AttachmentURL string `json:"attachment_url,omitempty"` // required for an image: .jpg, .jpeg or .png
	BigText       string `json:"big_text,omitempty"`
	// Badge is a number ("3") that sets the badge or "+N" that adds N to it; empty means "+1".
	Badge         string         `json:"badge,omitempty"`
	Ext           map[string]any `json:"ext,omitempty"`
	ShowBeginTime int64          `json:"show_begin_time,omitempty"` // Unix seconds
	ShowEndTime   int64          `json:"show_end_time,omitempty"`   // Unix seconds
	IOS           *NotifyIOS     `json:"ios,omitempty"`
	Android       *NotifyVendor  `json:"android,omitempty"`
	Huawei        *NotifyHuawei  `json:"huawei,omitempty"`
	Xiaomi        *NotifyVendor  `json:"xiaomi,omitempty"`
	OPPO          *NotifyVendor  `json:"oppo,omitempty"`
	Vivo          *NotifyVivo    `json:"vivo,omitempty"`
	Flyme         *NotifyVendor  `json:"flyme,omitempty"`
	FCM           *NotifyVendor  `json:"fcm,omitempty"`
}

// NotifyIOS holds the APNs parameters of a notify message.
type NotifyIOS struct {
	Sound            string `json:"sound,omitempty"`
	ContentAvailable *bool  `json:"content_available,omitempty"`
	MutableContent   *bool  `json:"mutable_content,omitempty"`
	Category         string `json:"category,omitempty"`
	ThreadID         string `json:"thread_id,omitempty"`
	Subtitle         string `json:"subtitle,omitempty"`
	APNSCollapseID   string `json:"apns_collapse_id,omitempty"`
}

// NotifyVendor holds the parameters of an Android vendor channel (android, xiaomi, oppo,
// flyme, fcm; huawei and vivo add their own). A vendor block overrides the android block.
type NotifyVendor struct {
	Sound       string `json:"sound,omitempty"`
	ChannelID   string `json:"channel_id,omitempty"`
	ClickAction string `json:"click_action,omitempty"` // ClickActionIntent or ClickActionOpenApp
	Intent      string `json:"intent,omitempty"`       // required with ClickActionIntent
}

// NotifyHuawei holds the Huawei channel's parameters.
type NotifyHuawei struct {
	NotifyVendor
	BadgeClass string `json:"badge_class,omitempty"`
}

// NotifyVivo holds the vivo channel's parameters.
type NotifyVivo struct {
	NotifyVendor
	PushMode       int `json:"push_mode,omitempty"`      // 0 production, 1 test
	Classification int `json:"classification,omitempty"` // 0 operational, 1 system message
}

// The notify payload's schema, in the field order of notify-push §4.2. The top level
// (audience, setting.request_id) is handled by decodeNotify itself.

// notifyObject describes one JSON object of a notify payload.
type notifyObject struct {
	fields []notifyField
	// check, when set, applies the rules that involve several fields, after each field
	// passed on its own.
	check func(path string, m map[string]json.RawMessage) *Error
}

// notifyField is one field of a notifyObject: a nested object or a value checked by value,
// which returns the field's compact encoding.
type notifyField struct {
	name  string
	value func(path string, raw json.RawMessage) ([]byte, *Error)
	obj   *notifyObject
}

var (
	notifySetting = &notifyObject{fields: []notifyField{
		// request_id is read and rewritten by decodeNotify.
		{name: "distribution_strategy", value: oneOf(DistributionCombined, DistributionMXPushOnly, DistributionOSPushOnly)},
		{name: "ospush_sequence", value: listOf("ups", "fcm", "huawei", "xiaomi", "oppo", "vivo", "meizu")},
	}}

	notifyMessage = &notifyObject{
		fields: []notifyField{
			{name: "type", value: oneOf(MessageText, MessageImage, MessageCmd)},
			{name: "title", value: jsonString},
			{name: "body", value: jsonString},
			{name: "attachment_url", value: jsonString},
			{name: "big_text", value: jsonString},
			{name: "badge", value: badgeValue},
			{name: "ext", value: jsonObject},
			{name: "show_begin_time", value: unixSeconds},
			{name: "show_end_time", value: unixSeconds},
			{name: "ios", obj: &notifyObject{fields: []notifyField{
				{name: "sound", value: jsonString},
				{name: "content_available", value: jsonBool},
				{name: "mutable_content", value: jsonBool},
				{name: "category", value: jsonString},
				{name: "thread_id", value: jsonString},
				{name: "subtitle", value: jsonString},
				{name: "apns_collapse_id", value: jsonString},
			}}},
			{name: "android", obj: vendorObject()},
			{name: "huawei", obj: vendorObject(notifyField{name: "badge_class", value: jsonString})},
			{name: "xiaomi", obj: vendorObject()},
			{name: "oppo", obj: vendorObject()},
			{name: "vivo", obj: vendorObject(
				notifyField{name: "push_mode", value: zeroOrOne},
				notifyField{name: "classification", value: zeroOrOne},
			)},
			{name: "flyme", obj: vendorObject()},
			{name: "fcm", obj: vendorObject()},
		},
		check: checkNotifyMessage,
	}

	audienceKeys = []string{"tag", "alias", "user_id", "push_token"}
)

func isNotifyField(name string) bool {
	return name == "audience" || name == "setting" || name == "message"
}

// vendorObject returns the schema of a vendor block: the common fields, then extra.
func vendorObject(extra ...notifyField) *notifyObject {
	f := []notifyField{
		{name: "sound", value: jsonString},
		{name: "channel_id", value: jsonString},
		{name: "click_action", value: oneOf(ClickActionIntent, ClickActionOpenApp)},
		{name: "intent", value: jsonString},
	}
	return &notifyObject{fields: append(f, extra...), check: checkClickAction}
}

// decodeNotify validates a notify payload and splits its audience into calls of at most
// MaxAudience targets. Each call's body is the payload, compact, with its chunk of the
// audience and setting.request_id set (contract §3). A target listed twice is sent once.
// Null stands for an absent field and is forwarded as it is.
func decodeNotify(in *payloadInput) ([]Call, *Error) {
	if !utf8.Valid(in.raw) {
		return nil, invalid("payload must be UTF-8 encoded JSON")
	}
	if err := checkKnown("payload", in.fields, isNotifyField); err != nil {
		return nil, err
	}
	aud, err := decodeAudience(in.fields["audience"])
	if err != nil {
		return nil, err
	}

	requestID := in.requestID
	var setting []byte // the setting's members after request_id: `,"k":v...`
	if raw, ok := in.fields["setting"]; ok && !isNull(raw) {
		m, err := objectFields("payload.setting", raw)
		if err != nil {
			return nil, err
		}
		if r, ok := m["request_id"]; ok && !isNull(r) {
			s, ok := decodeString(r)
			if !ok {
				return nil, invalid("payload.setting.request_id must be a string")
			}
			if utf8.RuneCountInString(s) > MaxNotifyRequestID {
				return nil, invalid("payload.setting.request_id must be at most %d characters", MaxNotifyRequestID)
			}
			if s != "" { // empty would turn the upstream's deduplication off
				requestID = s
			}
		}
		delete(m, "request_id")
		if setting, err = notifySetting.members(nil, "payload.setting", m); err != nil {
			return nil, err
		}
	}

	raw, ok := in.fields["message"]
	if !ok || isNull(raw) {
		return nil, invalid("payload.message is required")
	}
	message, err := notifyMessage.encode("payload.message", raw)
	if err != nil {
		return nil, err
	}

	chunks := 1
	if n := len(aud.items); n > MaxAudience {
		chunks = (n + MaxAudience - 1) / MaxAudience
	}
	calls := make([]Call, 0, chunks)
	for i := range chunks {
		id := requestID
		if chunks > 1 {
			id += "#" + strconv.Itoa(i)
		}
		b := make([]byte, 0, len(message)+len(setting)+aud.size(i)+len(id)+64)
		b = append(b, `{"audience":`...)
		b = aud.appendChunk(b, i)
		b = append(b, `,"setting":{"request_id":`...)
		b = appendString(b, id)
		b = append(b, setting...)
		b = append(b, `},"message":`...)
		b = append(b, message...)
		b = append(b, '}')
		calls = append(calls, Call{Body: b, Weight: 1})
	}
	return calls, nil
}

// notifyAudience is a validated audience: everyone (key == "") or a list of targets, each
// in its compact JSON encoding.
type notifyAudience struct {
	key   string
	items [][]byte
}

func (a *notifyAudience) chunk(i int) [][]byte {
	lo := i * MaxAudience
	return a.items[lo:min(lo+MaxAudience, len(a.items))]
}

func (a *notifyAudience) size(i int) int {
	if a.key == "" {
		return 5
	}
	n := len(a.key) + 8
	for _, it := range a.chunk(i) {
		n += len(it) + 1
	}
	return n
}

// appendChunk appends the JSON of the audience of call i.
func (a *notifyAudience) appendChunk(b []byte, i int) []byte {
	if a.key == "" {
		return append(b, `"all"`...)
	}
	b = append(b, `{"`...)
	b = append(b, a.key...)
	b = append(b, `":[`...)
	for j, it := range a.chunk(i) {
		if j > 0 {
			b = append(b, ',')
		}
		b = append(b, it...)
	}
	return append(b, "]}"...)
}

func decodeAudience(raw json.RawMessage) (notifyAudience, *Error) {
	const path = "payload.audience"
	const want = `must be "all" or an object with one of tag, alias, user_id, push_token`
	if len(raw) == 0 || isNull(raw) {
		return notifyAudience{}, invalid("%s is required: %s", path, want)
	}
	if raw[0] == '"' {
		if s, _ := decodeString(raw); s == AudienceAll {
			return notifyAudience{}, nil
		}
		return notifyAudience{}, invalid("%s %s", path, want)
	}
	if raw[0] != '{' {
		return notifyAudience{}, invalid("%s %s", path, want)
	}
	m, err := objectFields(path, raw)
	if err != nil {
		return notifyAudience{}, err
	}
	if err := checkKnown(path, m, func(k string) bool { return contains(audienceKeys, k) }); err != nil {
		return notifyAudience{}, err
	}
	var key string
	for _, k := range audienceKeys {
		if v, ok := m[k]; ok && !isNull(v) {
			if key != "" {
				return notifyAudience{}, invalid("%s must have exactly one of tag, alias, user_id, push_token, not both %s and %s", path, key, k)
			}
			key = k
		}
	}
	if key == "" {
		return notifyAudience{}, invalid("%s %s", path, want)
	}
	path2 := path + "." + key
	var list []json.RawMessage
	if r := m[key]; r[0] != '[' || json.Unmarshal(r, &list) != nil || len(list) == 0 {
		return notifyAudience{}, invalid("%s must be a non-empty list", path2)
	}
	a := notifyAudience{key: key, items: make([][]byte, 0, len(list))}
	seen := make(map[string]struct{}, len(list))
	for i, it := range list {
		var enc []byte
		var id string
		if key == "user_id" {
			v, ok := parseUserID(it)
			if !ok {
				return notifyAudience{}, invalid("%s[%d] must be a user id: a non-negative 64-bit integer", path2, i)
			}
			enc = strconv.AppendInt(nil, v, 10)
			id = string(enc)
		} else {
			s, ok := decodeString(it)
			if !ok || s == "" {
				return notifyAudience{}, invalid("%s[%d] must be a non-empty string", path2, i)
			}
			enc, id = it, s
		}
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		a.items = append(a.items, enc)
	}
	return a, nil
}

// parseUserID accepts a JSON number or a decimal string holding a non-negative 64-bit integer.
func parseUserID(raw json.RawMessage) (int64, bool) {
	s := string(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var ok bool
		if s, ok = decodeString(raw); !ok {
			return 0, false
		}
	}
	if !isDigits(s) {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// encode validates the JSON object raw and returns its compact encoding in schema order.
func (o *notifyObject) encode(path string, raw json.RawMessage) ([]byte, *Error) {
	m, err := objectFields(path, raw)
	if err != nil {
		return nil, err
	}
	b, err := o.members(make([]byte, 0, len(raw)+1), path, m)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return []byte("{}"), nil
	}
	b[0] = '{' // in place of the leading comma written by members
	return append(b, '}'), nil
}

// members validates the fields m of one object and appends them in schema order, each as
// `,"name":value`.
func (o *notifyObject) members(b []byte, path string, m map[string]json.RawMessage) ([]byte, *Error) {
	if err := checkKnown(path, m, o.known); err != nil {
		return nil, err
	}
	for _, f := range o.fields {
		raw, ok := m[f.name]
		if !ok {
			continue
		}
		out := []byte(raw)
		if !isNull(raw) {
			var err *Error
			p := path + "." + f.name
			if f.obj != nil {
				out, err = f.obj.encode(p, raw)
			} else {
				out, err = f.value(p, raw)
			}
			if err != nil {
				return nil, err
			}
		}
		b = append(b, `,"`...)
		b = append(b, f.name...)
		b = append(b, `":`...)
		b = append(b, out...)
	}
	if o.check != nil {
		if err := o.check(path, m); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (o *notifyObject) known(name string) bool {
	for _, f := range o.fields {
		if f.name == name {
			return true
		}
	}
	return false
}

// checkNotifyMessage applies the message rules that involve several fields.
func checkNotifyMessage(path string, m map[string]json.RawMessage) *Error {
	if t, _ := decodeString(m["type"]); t == MessageImage {
		u, _ := decodeString(m["attachment_url"])
		if u == "" {
			return invalid("%s.attachment_url is required for an image message", path)
		}
		if !imageURL(u) {
			return invalid("%s.attachment_url must end in .jpg, .jpeg or .png for an image message", path)
		}
	}
	begin, okB := decodeInt(m["show_begin_time"])
	end, okE := decodeInt(m["show_end_time"])
	if okB && okE && begin > end {
		return invalid("%s.show_begin_time must not be after %s.show_end_time", path, path)
	}
	return nil
}

// checkClickAction applies a vendor block's rule: click_action "intent" needs an intent.
func checkClickAction(path string, m map[string]json.RawMessage) *Error {
	if a, _ := decodeString(m["click_action"]); a == ClickActionIntent {
		if s, _ := decodeString(m["intent"]); strings.TrimSpace(s) == "" {
			return invalid(`%s.intent is required when %s.click_action is "intent"`, path, path)
		}
	}
	return nil
}

// imageURL reports whether u, without its query and fragment, ends in .jpg, .jpeg or .png.
func imageURL(u string) bool {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	u = strings.ToLower(u)
	return strings.HasSuffix(u, ".jpg") || strings.HasSuffix(u, ".jpeg") || strings.HasSuffix(u, ".png")
}

// Value checks: each returns the value's compact encoding.

func jsonString(path string, raw json.RawMessage) ([]byte, *Error) {
	if _, ok := decodeString(raw); !ok {
		return nil, invalid("%s must be a string", path)
	}
	return raw, nil
}

func jsonBool(path string, raw json.RawMessage) ([]byte, *Error) {
	if s := string(raw); s != "true" && s != "false" {
		return nil, invalid("%s must be true or false", path)
	}
	return raw, nil
}

// jsonObject accepts any JSON object (message.ext is free-form).
func jsonObject(path string, raw json.RawMessage) ([]byte, *Error) {
	if raw[0] != '{' {
		return nil, invalid("%s must be a JSON object", path)
	}
	var b bytes.Buffer
	b.Grow(len(raw))
	if err := json.Compact(&b, raw); err != nil {
		return nil, invalid("%s must be a JSON object", path)
	}
	return b.Bytes(), nil
}

// oneOf accepts one of the strings values, or the empty string, which the upstream reads
// as its default.
func oneOf(values ...string) func(string, json.RawMessage) ([]byte, *Error) {
	return func(path string, raw json.RawMessage) ([]byte, *Error) {
		s, ok := decodeString(raw)
		if !ok || (s != "" && !contains(values, s)) {
			return nil, invalid("%s must be one of %s", path, strings.Join(values, ", "))
		}
		return raw, nil
	}
}

// listOf accepts a list whose items are each one of values.
func listOf(values ...string) func(string, json.RawMessage) ([]byte, *Error) {
	return func(path string, raw json.RawMessage) ([]byte, *Error) {
		var items []json.RawMessage
		if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
			return nil, invalid("%s must be a list of strings", path)
		}
		b := make([]byte, 0, len(raw))
		b = append(b, '[')
		for i, it := range items {
			if s, ok := decodeString(it); !ok || !contains(values, s) {
				return nil, invalid("%s[%d] must be one of %s", path, i, strings.Join(values, ", "))
			}
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, it...)
		}
		return append(b, ']'), nil
	}
}

// unixSeconds accepts an integer Unix time in seconds that fits the upstream's int32.
func unixSeconds(path string, raw json.RawMessage) ([]byte, *Error) {
	if _, ok := decodeInt(raw); !ok {
		return nil, invalid("%s must be an integer Unix time in seconds, 0 to %d", path, math.MaxInt32)
	}
	return raw, nil
}

func zeroOrOne(path string, raw json.RawMessage) ([]byte, *Error) {
	if s := string(raw); s != "0" && s != "1" {
		return nil, invalid("%s must be 0 or 1", path)
	}
	return raw, nil
}

// badgeValue accepts a non-negative integer, as a JSON number or a string, a string "+N"
// that adds N to the badge, or the empty string (the upstream's default "+1").
func badgeValue(path string, raw json.RawMessage) ([]byte, *Error) {
	s := string(raw)
	if raw[0] == '"' {
		s, _ = decodeString(raw)
		if s == "" {
			return raw, nil
		}
		s = strings.TrimPrefix(s, "+")
	}
	if !isDigits(s) {
		return nil, invalid(`%s must be a number, or a string holding a number or "+N"`, path)
	}
	if _, err := strconv.ParseInt(s, 10, 32); err != nil {
		return nil, invalid("%s must be at most %d", path, math.MaxInt32)
	}
	return raw, nil
}

// JSON helpers.

// objectFields decodes the JSON object raw into its fields.
func objectFields(path string, raw json.RawMessage) (map[string]json.RawMessage, *Error) {
	var m map[string]json.RawMessage
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &m) != nil {
		return nil, invalid("%s must be a JSON object", path)
	}
	return m, nil
}

// checkKnown refuses the first (in sorted order) field of m that is not known.
func checkKnown(path string, m map[string]json.RawMessage, known func(string) bool) *Error {
	var unknown []string
	for k := range m {
		if !known(k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		if slices.Contains(CredentialFields, k) {
			return Errorf(KindCredentialsInJob, fmt.Sprintf("%s.%s: credentials must not be in a job; they come from the worker's configuration", path, k))
		}
	}
	return invalid("%s.%s: unknown field (not in the notify API)", path, unknown[0])
}

func decodeString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// decodeInt decodes a JSON integer from 0 to MaxInt32.
func decodeInt(raw json.RawMessage) (int64, bool) {
	if !isDigits(string(raw)) {
		return 0, false
	}
	v, err := strconv.ParseInt(string(raw), 10, 32)
	return v, err == nil
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
