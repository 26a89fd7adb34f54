package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

var notifyVendors = []string{"android", "huawei", "xiaomi", "oppo", "vivo", "flyme", "fcm"}

// notifyJob returns a notify job with request id job-1 and the payload p.
func notifyJob(p string) []byte {
	return []byte(`{"request_id":"job-1","payload":` + p + `}`)
}

func decodeNotifyJob(data []byte) (*Decoded, *Error) {
	return Decode(Meta{Subject: "push.jobs.notify", Seq: 7}, data, Options{})
}

// notifyBody is a call body, decoded for assertions.
type notifyBody struct {
	Audience json.RawMessage `json:"audience"`
	Setting  struct {
		RequestID string `json:"request_id"`
	} `json:"setting"`
	Message json.RawMessage `json:"message"`
}

// checkCall asserts what holds for every notify call and returns its body decoded.
func checkCall(t *testing.T, c Call) notifyBody {
	t.Helper()
	if c.Weight != 1 {
		t.Errorf("weight = %d, want 1", c.Weight)
	}
	if !json.Valid(c.Body) {
		t.Fatalf("body is not valid JSON: %s", c.Body)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, c.Body); err != nil || !bytes.Equal(compact.Bytes(), c.Body) {
		t.Errorf("body is not compact: %s", c.Body)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(c.Body, &top); err != nil {
		t.Fatalf("body is not an object: %v", err)
	}
	for k := range top {
		if k != "audience" && k != "setting" && k != "message" {
			t.Errorf("body has field %q", k)
		}
	}
	var b notifyBody
	if err := json.Unmarshal(c.Body, &b); err != nil {
		t.Fatalf("body: %v", err)
	}
	return b
}

func TestDecodeNotifyValid(t *testing.T) {
	type tc struct {
		name    string
		payload string
	}
	tests := []tc{
		{"audience all", `{"audience":"all","message":{"title":"t","body":"b"}}`},
		{"audience tag", `{"audience":{"tag":["beijing","shanghai"]},"message":{"type":"cmd","ext":{"key1":12345,"key2":"xxx"}}}`},
		{"audience alias", `{"audience":{"alias":["a1"]},"message":{}}`},
		{"audience user_id numbers", `{"audience":{"user_id":[111,222]},"message":{}}`},
		{"audience user_id decimal strings", `{"audience":{"user_id":["111","9223372036854775807"]},"message":{}}`},
		{"audience push_token", `{"audience":{"push_token":["t1","t2"]},"message":{"type":"image","attachment_url":"https://xxx.com/images/1.jpg"}}`},
		{"audience other keys null", `{"audience":{"tag":["a"],"alias":null},"message":{}}`},
		{"setting absent", `{"audience":"all","message":{}}`},
		{"setting null", `{"audience":"all","setting":null,"message":{}}`},
		{"setting empty", `{"audience":"all","setting":{},"message":{}}`},
		{"setting request_id 128 chars", `{"audience":"all","setting":{"request_id":"` + strings.Repeat("r", 128) + `"},"message":{}}`},
		{"setting request_id 128 non-ASCII chars", `{"audience":"all","setting":{"request_id":"` + strings.Repeat("é", 128) + `"},"message":{}}`},
		{"distribution combined", `{"audience":"all","setting":{"distribution_strategy":"combined"},"message":{}}`},
		{"distribution mxpush_only", `{"audience":"all","setting":{"distribution_strategy":"mxpush_only"},"message":{}}`},
		{"distribution ospush_only", `{"audience":"all","setting":{"distribution_strategy":"ospush_only"},"message":{}}`},
		{"distribution empty is the default", `{"audience":"all","setting":{"distribution_strategy":""},"message":{}}`},
		{"ospush_sequence every item", `{"audience":"all","setting":{"ospush_sequence":["ups","fcm","huawei","xiaomi","oppo","vivo","meizu"]},"message":{}}`},
		{"ospush_sequence empty", `{"audience":"all","setting":{"ospush_sequence":[]},"message":{}}`},
		{"type absent is text", `{"audience":"all","message":{"title":"t"}}`},
		{"type text", `{"audience":"all","message":{"type":"text"}}`},
		{"type cmd", `{"audience":"all","message":{"type":"cmd"}}`},
		{"type empty is text", `{"audience":"all","message":{"type":""}}`},
		{"image jpg", `{"audience":"all","message":{"type":"image","attachment_url":"https://x.com/a.jpg"}}`},
		{"image jpeg", `{"audience":"all","message":{"type":"image","attachment_url":"https://x.com/a.jpeg"}}`},
		{"image png", `{"audience":"all","message":{"type":"image","attachment_url":"https://x.com/a.png"}}`},
		{"image upper case", `{"audience":"all","message":{"type":"image","attachment_url":"https://x.com/A.JPG"}}`},
		{"image with query", `{"audience":"all","message":{"type":"image","attachment_url":"https://x.com/a.png?w=876&h=324"}}`},
		{"image with fragment", `{"audience":"all","message":{"type":"image","attachment_url":"https://x.com/a.jpeg#f"}}`},
		{"text with any attachment", `{"audience":"all","message":{"type":"text","attachment_url":"https://x.com/a.mp4"}}`},
		{"all strings", `{"audience":"all","message":{"title":"t","body":"b","big_text":"bt","attachment_url":"u"}}`},
		{"badge number", `{"audience":"all","message":{"badge":5}}`},
		{"badge zero", `{"audience":"all","message":{"badge":0}}`},
		{"badge string number", `{"audience":"all","message":{"badge":"12"}}`},
		{"badge plus", `{"audience":"all","message":{"badge":"+1"}}`},
		{"badge empty is +1", `{"audience":"all","message":{"badge":""}}`},
		{"ext nested", `{"audience":"all","message":{"ext":{"a":{"b":[1,"x",null,true]},"appKey":"free-form"}}}`},
		{"ext empty", `{"audience":"all","message":{"ext":{}}}`},
		{"show times", `{"audience":"all","message":{"show_begin_time":1700000000,"show_end_time":1700003600}}`},
		{"show times equal", `{"audience":"all","message":{"show_begin_time":1700000000,"show_end_time":1700000000}}`},
		{"show begin only", `{"audience":"all","message":{"show_begin_time":1700000000}}`},
		{"show end only", `{"audience":"all","message":{"show_end_time":1700000000}}`},
		{"ios every field", `{"audience":"all","message":{"ios":{"sound":"s","content_available":true,"mutable_content":false,"category":"c","thread_id":"t","subtitle":"st","apns_collapse_id":"id"}}}`},
		{"ios empty", `{"audience":"all","message":{"ios":{}}}`},
		{"huawei badge_class", `{"audience":"all","message":{"huawei":{"badge_class":"com.test.badge.MainActivity"}}}`},
		{"vivo push_mode and classification 0", `{"audience":"all","message":{"vivo":{"push_mode":0,"classification":0}}}`},
		{"vivo push_mode and classification 1", `{"audience":"all","message":{"vivo":{"push_mode":1,"classification":1}}}`},
		{"nulls are absent", `{"audience":"all","message":{"type":null,"title":null,"badge":null,"ext":null,"ios":null,"huawei":{"intent":null}}}`},
		{"doc example 1", `{ "audience": "all", "message": { "type": "text", "title": "this is push title", "body": "this is push body" } }`},
		{"doc example 2", `{ "audience": {"push_token":["token1","token2"]}, "message": { "type": "image", "title": "this is push title", "body": "this is push body", "attachment_url": "https://xxx.com/images/1.jpg" } }`},
		{"doc example 3", `{ "audience": {"tag":["beijing","shanghai"]}, "message": { "type": "cmd", "title": "this is push title", "body": "this is push body", "ext": {"key1": 12345, "key2": "xxx" } } }`},
	}
	for _, v := range notifyVendors {
		tests = append(tests,
			tc{v + " every common field", `{"audience":"all","message":{"` + v + `":{"sound":"s","channel_id":"c","click_action":"intent","intent":"intent:#Intent;component=a/b;end"}}}`},
			tc{v + " open_app", `{"audience":"all","message":{"` + v + `":{"click_action":"open_app"}}}`},
			tc{v + " intent without click_action", `{"audience":"all","message":{"` + v + `":{"intent":"x"}}}`},
			tc{v + " empty", `{"audience":"all","message":{"` + v + `":{}}}`},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := decodeNotifyJob(notifyJob(tt.payload))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if d.Spec.Type != Notify || d.Weight() != 1 || len(d.Calls) != 1 {
				t.Fatalf("type %s, %d calls of weight %d, want one notify call", d.Spec.Type, len(d.Calls), d.Weight())
			}
			b := checkCall(t, d.Calls[0])
			if b.Setting.RequestID == "" {
				t.Errorf("setting.request_id not set: %s", d.Calls[0].Body)
			}
		})
	}
}

func TestDecodeNotifyInvalid(t *testing.T) {
	type tc struct {
		name    string
		payload string
		detail  string // the detail contains this
	}
	tests := []tc{
		// top level
		{"unknown top-level field", `{"audience":"all","message":{},"priority":1}`, "payload.priority: unknown field"},
		{"vendor block at top level", `{"audience":"all","message":{},"huawei":{}}`, "payload.huawei: unknown field"},
		{"not UTF-8", "{\"audience\":\"all\",\"message\":{\"title\":\"\xff\"}}", "UTF-8"},
		// audience
		{"audience missing", `{"message":{}}`, "payload.audience is required"},
		{"audience null", `{"audience":null,"message":{}}`, "payload.audience is required"},
		{"audience other string", `{"audience":"everyone","message":{}}`, "payload.audience must be"},
		{"audience ALL", `{"audience":"ALL","message":{}}`, "payload.audience must be"},
		{"audience number", `{"audience":1,"message":{}}`, "payload.audience must be"},
		{"audience list", `{"audience":["a"],"message":{}}`, "payload.audience must be"},
		{"audience empty object", `{"audience":{},"message":{}}`, "payload.audience must be"},
		{"audience two kinds", `{"audience":{"tag":["a"],"alias":["b"]},"message":{}}`, "payload.audience must have exactly one of"},
		{"audience unknown kind", `{"audience":{"device":["a"]},"message":{}}`, "payload.audience.device: unknown field"},
		{"audience empty list", `{"audience":{"tag":[]},"message":{}}`, "payload.audience.tag must be a non-empty list"},
		{"audience not a list", `{"audience":{"alias":"a"},"message":{}}`, "payload.audience.alias must be a non-empty list"},
		{"audience null list", `{"audience":{"push_token":null},"message":{}}`, "payload.audience must be"},
		{"audience empty string item", `{"audience":{"alias":["a",""]},"message":{}}`, "payload.audience.alias[1] must be a non-empty string"},
		{"audience number item", `{"audience":{"tag":[1]},"message":{}}`, "payload.audience.tag[0] must be a non-empty string"},
		{"audience null item", `{"audience":{"push_token":["a",null]},"message":{}}`, "payload.audience.push_token[1] must be a non-empty string"},
		{"user_id fraction", `{"audience":{"user_id":[1,2.5]},"message":{}}`, "payload.audience.user_id[1] must be a user id"},
		{"user_id exponent", `{"audience":{"user_id":[1e3]},"message":{}}`, "payload.audience.user_id[0] must be a user id"},
		{"user_id negative", `{"audience":{"user_id":[-1]},"message":{}}`, "payload.audience.user_id[0] must be a user id"},
		{"user_id beyond int64", `{"audience":{"user_id":[9223372036854775808]},"message":{}}`, "payload.audience.user_id[0] must be a user id"},
		{"user_id non-decimal string", `{"audience":{"user_id":["u42"]},"message":{}}`, "payload.audience.user_id[0] must be a user id"},
		{"user_id bool", `{"audience":{"user_id":[true]},"message":{}}`, "payload.audience.user_id[0] must be a user id"},
		// setting
		{"setting not an object", `{"audience":"all","setting":"x","message":{}}`, "payload.setting must be a JSON object"},
		{"setting unknown field", `{"audience":"all","setting":{"priority":1},"message":{}}`, "payload.setting.priority: unknown field"},
		{"request_id number", `{"audience":"all","setting":{"request_id":1},"message":{}}`, "payload.setting.request_id must be a string"},
		{"request_id too long", `{"audience":"all","setting":{"request_id":"` + strings.Repeat("r", 129) + `"},"message":{}}`, "payload.setting.request_id must be at most 128"},
		{"distribution unknown", `{"audience":"all","setting":{"distribution_strategy":"fastest"},"message":{}}`, "payload.setting.distribution_strategy must be one of"},
		{"distribution number", `{"audience":"all","setting":{"distribution_strategy":1},"message":{}}`, "payload.setting.distribution_strategy must be one of"},
		{"ospush_sequence unknown item", `{"audience":"all","setting":{"ospush_sequence":["ups","apns"]},"message":{}}`, "payload.setting.ospush_sequence[1] must be one of"},
		{"ospush_sequence empty item", `{"audience":"all","setting":{"ospush_sequence":[""]},"message":{}}`, "payload.setting.ospush_sequence[0] must be one of"},
		{"ospush_sequence string", `{"audience":"all","setting":{"ospush_sequence":"ups"},"message":{}}`, "payload.setting.ospush_sequence must be a list"},
		// message
		{"message missing", `{"audience":"all"}`, "payload.message is required"},
		{"message null", `{"audience":"all","message":null}`, "payload.message is required"},
		{"message string", `{"audience":"all","message":"hi"}`, "payload.message must be a JSON object"},
		{"message unknown field", `{"audience":"all","message":{"sound":"s"}}`, "payload.message.sound: unknown field"},
		{"type unknown", `{"audience":"all","message":{"type":"video"}}`, "payload.message.type must be one of"},
		{"type upper case", `{"audience":"all","message":{"type":"TEXT"}}`, "payload.message.type must be one of"},
		{"title number", `{"audience":"all","message":{"title":1}}`, "payload.message.title must be a string"},
		{"body object", `{"audience":"all","message":{"body":{}}}`, "payload.message.body must be a string"},
		{"big_text bool", `{"audience":"all","message":{"big_text":true}}`, "payload.message.big_text must be a string"},
		{"attachment_url number", `{"audience":"all","message":{"attachment_url":1}}`, "payload.message.attachment_url must be a string"},
		{"image without attachment", `{"audience":"all","message":{"type":"image","title":"t"}}`, "payload.message.attachment_url is required"},
		{"image empty attachment", `{"audience":"all","message":{"type":"image","attachment_url":""}}`, "payload.message.attachment_url is required"},
		{"image gif", `{"audience":"all","message":{"type":"image","attachment_url":"https://x.com/a.gif"}}`, "payload.message.attachment_url must end in .jpg, .jpeg or .png"},
		{"image no extension", `{"audience":"all","message":{"type":"image","attachment_url":"https://x.com/a"}}`, "payload.message.attachment_url must end in"},
		{"image extension only in query", `{"audience":"all","message":{"type":"image","attachment_url":"https://x.com/img?f=a.png"}}`, "payload.message.attachment_url must end in"},
		{"image jpg not last", `{"audience":"all","message":{"type":"image","attachment_url":"https://x.com/a.jpg.gif"}}`, "payload.message.attachment_url must end in"},
		{"badge text", `{"audience":"all","message":{"badge":"abc"}}`, "payload.message.badge must be a number"},
		{"badge negative", `{"audience":"all","message":{"badge":-1}}`, "payload.message.badge must be a number"},
		{"badge negative string", `{"audience":"all","message":{"badge":"-1"}}`, "payload.message.badge must be a number"},
		{"badge fraction", `{"audience":"all","message":{"badge":1.5}}`, "payload.message.badge must be a number"},
		{"badge plus alone", `{"audience":"all","message":{"badge":"+"}}`, "payload.message.badge must be a number"},
		{"badge plus text", `{"audience":"all","message":{"badge":"+x"}}`, "payload.message.badge must be a number"},
		{"badge bool", `{"audience":"all","message":{"badge":true}}`, "payload.message.badge must be a number"},
		{"badge too large", `{"audience":"all","message":{"badge":"99999999999"}}`, "payload.message.badge must be at most"},
		{"ext string", `{"audience":"all","message":{"ext":"k=v"}}`, "payload.message.ext must be a JSON object"},
		{"ext list", `{"audience":"all","message":{"ext":[1]}}`, "payload.message.ext must be a JSON object"},
		{"show_begin_time fraction", `{"audience":"all","message":{"show_begin_time":1.5}}`, "payload.message.show_begin_time must be an integer"},
		{"show_begin_time string", `{"audience":"all","message":{"show_begin_time":"1700000000"}}`, "payload.message.show_begin_time must be an integer"},
		{"show_begin_time negative", `{"audience":"all","message":{"show_begin_time":-1}}`, "payload.message.show_begin_time must be an integer"},
		{"show_end_time milliseconds", `{"audience":"all","message":{"show_end_time":1700000000000}}`, "payload.message.show_end_time must be an integer"},
		{"show begin after end", `{"audience":"all","message":{"show_begin_time":1700003600,"show_end_time":1700000000}}`, "payload.message.show_begin_time must not be after payload.message.show_end_time"},
		{"ios not an object", `{"audience":"all","message":{"ios":true}}`, "payload.message.ios must be a JSON object"},
		{"ios sound number", `{"audience":"all","message":{"ios":{"sound":1}}}`, "payload.message.ios.sound must be a string"},
		{"ios content_available string", `{"audience":"all","message":{"ios":{"content_available":"yes"}}}`, "payload.message.ios.content_available must be true or false"},
		{"ios mutable_content number", `{"audience":"all","message":{"ios":{"mutable_content":1}}}`, "payload.message.ios.mutable_content must be true or false"},
		{"ios thread_id number", `{"audience":"all","message":{"ios":{"thread_id":1}}}`, "payload.message.ios.thread_id must be a string"},
		{"ios unknown field", `{"audience":"all","message":{"ios":{"badge":1}}}`, "payload.message.ios.badge: unknown field"},
		{"ios click_action", `{"audience":"all","message":{"ios":{"click_action":"open_app"}}}`, "payload.message.ios.click_action: unknown field"},
		{"badge_class outside huawei", `{"audience":"all","message":{"xiaomi":{"badge_class":"x"}}}`, "payload.message.xiaomi.badge_class: unknown field"},
		{"push_mode outside vivo", `{"audience":"all","message":{"oppo":{"push_mode":1}}}`, "payload.message.oppo.push_mode: unknown field"},
		{"huawei badge_class number", `{"audience":"all","message":{"huawei":{"badge_class":1}}}`, "payload.message.huawei.badge_class must be a string"},
		{"vivo push_mode 2", `{"audience":"all","message":{"vivo":{"push_mode":2}}}`, "payload.message.vivo.push_mode must be 0 or 1"},
		{"vivo push_mode string", `{"audience":"all","message":{"vivo":{"push_mode":"1"}}}`, "payload.message.vivo.push_mode must be 0 or 1"},
		{"vivo classification 2", `{"audience":"all","message":{"vivo":{"classification":2}}}`, "payload.message.vivo.classification must be 0 or 1"},
		{"vivo classification bool", `{"audience":"all","message":{"vivo":{"classification":true}}}`, "payload.message.vivo.classification must be 0 or 1"},
	}
	for _, v := range notifyVendors {
		p := "payload.message." + v
		tests = append(tests,
			tc{v + " intent missing", `{"audience":"all","message":{"` + v + `":{"click_action":"intent"}}}`, p + ".intent is required"},
			tc{v + " intent empty", `{"audience":"all","message":{"` + v + `":{"click_action":"intent","intent":" "}}}`, p + ".intent is required"},
			tc{v + " click_action unknown", `{"audience":"all","message":{"` + v + `":{"click_action":"open_url"}}}`, p + ".click_action must be one of"},
			tc{v + " sound number", `{"audience":"all","message":{"` + v + `":{"sound":1}}}`, p + ".sound must be a string"},
			tc{v + " channel_id number", `{"audience":"all","message":{"` + v + `":{"channel_id":1}}}`, p + ".channel_id must be a string"},
			tc{v + " intent number", `{"audience":"all","message":{"` + v + `":{"intent":1}}}`, p + ".intent must be a string"},
			tc{v + " unknown field", `{"audience":"all","message":{"` + v + `":{"title":"t"}}}`, p + ".title: unknown field"},
			tc{v + " not an object", `{"audience":"all","message":{"` + v + `":"x"}}`, p + " must be a JSON object"},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := decodeNotifyJob(notifyJob(tt.payload))
			if err == nil {
				t.Fatalf("Decode accepted the job: %s", d.Calls[0].Body)
			}
			if err.Kind != KindInvalidJob {
				t.Errorf("kind = %s, want %s", err.Kind, KindInvalidJob)
			}
			if !strings.Contains(err.Detail, tt.detail) {
				t.Errorf("detail = %q, want it to contain %q", err.Detail, tt.detail)
			}
			if d.Calls != nil {
				t.Errorf("calls = %d, want none", len(d.Calls))
			}
			if d.RequestID != "job-1" || d.Spec == nil || d.Spec.Type != Notify {
				t.Errorf("request id %q, spec %v: want job-1 and notify", d.RequestID, d.Spec)
			}
		})
	}
}

func TestDecodeNotifyCredentials(t *testing.T) {
	for _, f := range CredentialFields {
		t.Run(f, func(t *testing.T) {
			_, err := decodeNotifyJob(notifyJob(`{"audience":"all","message":{},"` + f + `":"secret"}`))
			if err == nil || err.Kind != KindCredentialsInJob || !strings.Contains(err.Detail, "payload."+f) {
				t.Fatalf("err = %v, want %s naming payload.%s", err, KindCredentialsInJob, f)
			}
		})
	}
}

// TestDecodeNotifyNestedCredentials: a credential field inside setting or a vendor block
// is credentials_in_job, not just an unknown field.
func TestDecodeNotifyNestedCredentials(t *testing.T) {
	for _, c := range []struct{ payload, path string }{
		{`{"audience":"all","setting":{"access_token":"secret"},"message":{}}`, "payload.setting.access_token"},
		{`{"audience":"all","message":{"android":{"appKey":"secret"}}}`, "payload.message.android.appKey"},
	} {
		_, err := decodeNotifyJob(notifyJob(c.payload))
		if err == nil || err.Kind != KindCredentialsInJob || !strings.Contains(err.Detail, c.path) {
			t.Errorf("%s: err = %v, want %s naming %s", c.payload, err, KindCredentialsInJob, c.path)
		}
	}
}

// audienceList returns the audience list of kind key of a call body.
func audienceList(t *testing.T, b notifyBody, key string) []json.RawMessage {
	t.Helper()
	var a map[string][]json.RawMessage
	if err := json.Unmarshal(b.Audience, &a); err != nil {
		t.Fatalf("audience %s: %v", b.Audience, err)
	}
	if len(a) != 1 {
		t.Fatalf("audience %s: want exactly one list", b.Audience)
	}
	l, ok := a[key]
	if !ok {
		t.Fatalf("audience %s: no %s", b.Audience, key)
	}
	return l
}

func tokenList(prefix string, n int) []string {
	l := make([]string, n)
	for i := range l {
		l[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return l
}

func TestDecodeNotifySplit(t *testing.T) {
	tokens := func(n int) string {
		b, _ := json.Marshal(tokenList("tok-", n))
		return string(b)
	}
	const msg = `{"type":"text","title":"hi","ext":{"n":12345678901234567890}}`
	tests := []struct {
		name    string
		job     string
		meta    Meta
		sizes   []int
		ids     []string
		setting string // the setting members after request_id, "" for none
	}{
		{
			name:  "1200 tokens",
			job:   `{"request_id":"job-1","payload":{"audience":{"push_token":` + tokens(1200) + `},"message":` + msg + `}}`,
			sizes: []int{500, 500, 200},
			ids:   []string{"job-1#0", "job-1#1", "job-1#2"},
		},
		{
			name:  "exactly 500 is not split",
			job:   `{"request_id":"job-1","payload":{"audience":{"push_token":` + tokens(500) + `},"message":` + msg + `}}`,
			sizes: []int{500},
			ids:   []string{"job-1"},
		},
		{
			name:  "501",
			job:   `{"request_id":"job-1","payload":{"audience":{"push_token":` + tokens(501) + `},"message":` + msg + `}}`,
			sizes: []int{500, 1},
			ids:   []string{"job-1#0", "job-1#1"},
		},
		{
			name:  "1000",
			job:   `{"request_id":"job-1","payload":{"audience":{"push_token":` + tokens(1000) + `},"message":` + msg + `}}`,
			sizes: []int{500, 500},
			ids:   []string{"job-1#0", "job-1#1"},
		},
		{
			name:    "explicit request id, not split",
			job:     `{"request_id":"job-1","payload":{"audience":{"push_token":` + tokens(3) + `},"setting":{"request_id":"campaign-9","distribution_strategy":"ospush_only"},"message":` + msg + `}}`,
			sizes:   []int{3},
			ids:     []string{"campaign-9"},
			setting: `"distribution_strategy":"ospush_only"`,
		},
		{
			name:    "explicit request id, split",
			job:     `{"request_id":"job-1","payload":{"audience":{"push_token":` + tokens(1001) + `},"setting":{"ospush_sequence":["huawei","ups"],"request_id":"campaign-9","distribution_strategy":"combined"},"message":` + msg + `}}`,
			sizes:   []int{500, 500, 1},
			ids:     []string{"campaign-9#0", "campaign-9#1", "campaign-9#2"},
			setting: `"distribution_strategy":"combined","ospush_sequence":["huawei","ups"]`,
		},
		{
			name:  "empty explicit request id is replaced",
			job:   `{"request_id":"job-1","payload":{"audience":{"push_token":` + tokens(2) + `},"setting":{"request_id":""},"message":` + msg + `}}`,
			sizes: []int{2},
			ids:   []string{"job-1"},
		},
		{
			name:  "request id from the stream sequence",
			job:   `{"payload":{"audience":{"push_token":` + tokens(600) + `},"message":` + msg + `}}`,
			sizes: []int{500, 100},
			ids:   []string{"seq-7#0", "seq-7#1"},
		},
		{
			name:  "request id from Nats-Msg-Id",
			job:   `{"payload":{"audience":{"push_token":` + tokens(600) + `},"message":` + msg + `}}`,
			meta:  Meta{MsgID: "msg-3"},
			sizes: []int{500, 100},
			ids:   []string{"msg-3#0", "msg-3#1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.meta
			m.Subject, m.Seq = "push.jobs.notify", 7
			d, err := Decode(m, []byte(tt.job), Options{})
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if len(d.Calls) != len(tt.sizes) {
				t.Fatalf("%d calls, want %d", len(d.Calls), len(tt.sizes))
			}
			if d.Weight() != len(tt.sizes) {
				t.Errorf("weight = %d, want %d", d.Weight(), len(tt.sizes))
			}
			var all []string
			for i, c := range d.Calls {
				b := checkCall(t, c)
				if b.Setting.RequestID != tt.ids[i] {
					t.Errorf("call %d: request_id = %q, want %q", i, b.Setting.RequestID, tt.ids[i])
				}
				wantSetting := `"setting":{"request_id":"` + tt.ids[i] + `"`
				if tt.setting != "" {
					wantSetting += "," + tt.setting
				}
				if !bytes.Contains(c.Body, []byte(wantSetting+"}")) {
					t.Errorf("call %d: body has not %s}: %.300s", i, wantSetting, c.Body)
				}
				if string(b.Message) != msg {
					t.Errorf("call %d: message = %s, want %s", i, b.Message, msg)
				}
				l := audienceList(t, b, "push_token")
				if len(l) != tt.sizes[i] {
					t.Errorf("call %d: %d targets, want %d", i, len(l), tt.sizes[i])
				}
				for _, r := range l {
					var s string
					if err := json.Unmarshal(r, &s); err != nil {
						t.Fatalf("call %d: target %s: %v", i, r, err)
					}
					all = append(all, s)
				}
			}
			want := 0
			for _, n := range tt.sizes {
				want += n
			}
			// Every token exactly once, in the job's order.
			if !reflect.DeepEqual(all, tokenList("tok-", want)) {
				t.Errorf("targets over all calls differ from the job's list (%d targets)", len(all))
			}
		})
	}
}

func TestDecodeNotifyUserIDs(t *testing.T) {
	// More than 15 digits: a float64 round trip would change them.
	ids := []string{"1234567890123456789", "9007199254740993", "9223372036854775807", "18014398509481985", "0"}
	t.Run("kept exact", func(t *testing.T) {
		p := `{"audience":{"user_id":[` + strings.Join(ids, ",") + `,"36028797018963967"]},"message":{}}`
		d, err := decodeNotifyJob(notifyJob(p))
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		want := `{"audience":{"user_id":[` + strings.Join(ids, ",") + `,36028797018963967]},"setting":{"request_id":"job-1"},"message":{}}`
		if got := string(d.Calls[0].Body); got != want {
			t.Errorf("body\n got %s\nwant %s", got, want)
		}
	})
	t.Run("split", func(t *testing.T) {
		list := make([]string, 1001)
		for i := range list {
			list[i] = fmt.Sprintf("%d", int64(9007199254740993)+int64(i)*2)
		}
		p := `{"audience":{"user_id":[` + strings.Join(list, ",") + `]},"message":{}}`
		d, err := decodeNotifyJob(notifyJob(p))
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if len(d.Calls) != 3 {
			t.Fatalf("%d calls, want 3", len(d.Calls))
		}
		var got []string
		for i, c := range d.Calls {
			b := checkCall(t, c)
			if want := fmt.Sprintf("job-1#%d", i); b.Setting.RequestID != want {
				t.Errorf("call %d: request_id %q, want %q", i, b.Setting.RequestID, want)
			}
			for _, r := range audienceList(t, b, "user_id") {
				got = append(got, string(r))
			}
		}
		if !reflect.DeepEqual(got, list) {
			t.Errorf("user ids over all calls differ from the job's list")
		}
	})
}

func TestDecodeNotifyDuplicates(t *testing.T) {
	p := `{"audience":{"tag":["a","b","a","\u0062","c"]},"message":{}}`
	d, err := decodeNotifyJob(notifyJob(p))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := `{"audience":{"tag":["a","b","c"]},"setting":{"request_id":"job-1"},"message":{}}`
	if got := string(d.Calls[0].Body); got != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
	// 600 ids of which 100 repeat: 500 distinct targets, one call.
	list := append(tokenList("t", 500), tokenList("t", 100)...)
	b, _ := json.Marshal(list)
	d, err = decodeNotifyJob(notifyJob(`{"audience":{"alias":` + string(b) + `},"message":{}}`))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if len(d.Calls) != 1 || len(audienceList(t, checkCall(t, d.Calls[0]), "alias")) != 500 {
		t.Errorf("%d calls, want one of 500 targets", len(d.Calls))
	}
}

// TestDecodeNotifyBody checks the exact body: every value forwarded as given, compact, in
// the order of the upstream doc, with the request id added.
func TestDecodeNotifyBody(t *testing.T) {
	tests := []struct {
		name, payload, want string
	}{
		{
			name:    "audience all",
			payload: `{"message":{"title":"t"},"audience":"all"}`,
			want:    `{"audience":"all","setting":{"request_id":"job-1"},"message":{"title":"t"}}`,
		},
		{
			name: "every field",
			payload: `{
				"message": {
					"fcm": {"intent": "i", "click_action": "intent"},
					"flyme": {"sound": "f"},
					"vivo": {"classification": 1, "push_mode": 0, "sound": "v"},
					"oppo": {"channel_id": "o"},
					"xiaomi": {"click_action": "open_app"},
					"huawei": {"badge_class": "B", "sound": "h"},
					"android": {"sound": "a", "channel_id": "c"},
					"ios": {"apns_collapse_id": "x", "sound": "default", "content_available": true},
					"show_end_time": 1700003600,
					"show_begin_time": 1700000000,
					"ext": { "big": 12345678901234567890123, "f": 1.50, "s": "<a&b>", "nested": { "k": [ 1 , 2 ] } },
					"badge": "+2",
					"big_text": "long",
					"attachment_url": "https://x.com/a.JPEG?x=1",
					"body": "caf\u00e9 \"quoted\" <b>",
					"title": "ti",
					"type": "image"
				},
				"setting": {"ospush_sequence": ["vivo", "ups"], "distribution_strategy": "combined"},
				"audience": {"push_token": ["t1", "t2"]}
			}`,
			want: `{"audience":{"push_token":["t1","t2"]},"setting":{"request_id":"job-1","distribution_strategy":"combined","ospush_sequence":["vivo","ups"]},` +
				`"message":{"type":"image","title":"ti","body":"caf\u00e9 \"quoted\" <b>","attachment_url":"https://x.com/a.JPEG?x=1","big_text":"long","badge":"+2",` +
				`"ext":{"big":12345678901234567890123,"f":1.50,"s":"<a&b>","nested":{"k":[1,2]}},"show_begin_time":1700000000,"show_end_time":1700003600,` +
				`"ios":{"sound":"default","content_available":true,"apns_collapse_id":"x"},"android":{"sound":"a","channel_id":"c"},"huawei":{"sound":"h","badge_class":"B"},` +
				`"xiaomi":{"click_action":"open_app"},"oppo":{"channel_id":"o"},"vivo":{"sound":"v","push_mode":0,"classification":1},"flyme":{"sound":"f"},` +
				`"fcm":{"click_action":"intent","intent":"i"}}}`,
		},
		{
			name:    "nulls forwarded",
			payload: `{"audience":"all","setting":{"request_id":null,"distribution_strategy":null},"message":{"title":null,"ios":null}}`,
			want:    `{"audience":"all","setting":{"request_id":"job-1","distribution_strategy":null},"message":{"title":null,"ios":null}}`,
		},
		{
			name:    "null setting",
			payload: `{"audience":"all","setting":null,"message":{}}`,
			want:    `{"audience":"all","setting":{"request_id":"job-1"},"message":{}}`,
		},
		{
			name:    "explicit request id needing escapes",
			payload: `{"audience":"all","setting":{"request_id":"a\"b\u00e9"},"message":{}}`,
			want:    `{"audience":"all","setting":{"request_id":"a\"bé"},"message":{}}`,
		},
		{
			name:    "duplicate keys: the last one, as validated",
			payload: `{"audience":"all","message":{"type":"image","type":"text"}}`,
			want:    `{"audience":"all","setting":{"request_id":"job-1"},"message":{"type":"text"}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := decodeNotifyJob(notifyJob(tt.payload))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			checkCall(t, d.Calls[0])
			if got := string(d.Calls[0].Body); got != tt.want {
				t.Errorf("body\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestNotifyPayload(t *testing.T) {
	yes := true
	tests := []struct {
		name string
		p    NotifyPayload
	}{
		{"all", NotifyPayload{Audience: AudienceAll, Message: NotifyMessage{Title: "t", Body: "b"}}},
		{"tags", NotifyPayload{Audience: AudienceTags("beijing", "shanghai"), Message: NotifyMessage{Type: MessageCmd, Ext: map[string]any{"k": "1"}}}},
		{"aliases", NotifyPayload{Audience: AudienceAliases("a"), Message: NotifyMessage{Badge: "+1"}}},
		{"user ids", NotifyPayload{Audience: AudienceUserIDs(9007199254740993, 1), Message: NotifyMessage{}}},
		{"push tokens", NotifyPayload{Audience: AudiencePushTokens(tokenList("p", 1200)...), Message: NotifyMessage{}}},
		{"everything", NotifyPayload{
			Audience: AudiencePushTokens("t"),
			Setting:  &NotifySetting{RequestID: "r", DistributionStrategy: DistributionOSPushOnly, OSPushSequence: []string{"huawei", "ups"}},
			Message: NotifyMessage{
				Type: MessageImage, Title: "t", Body: "b", AttachmentURL: "https://x.com/a.png", BigText: "bt", Badge: "3",
				Ext: map[string]any{"k": "v"}, ShowBeginTime: 1700000000, ShowEndTime: 1700000001,
				IOS:     &NotifyIOS{Sound: "s", ContentAvailable: &yes, MutableContent: &yes, Category: "c", ThreadID: "th", Subtitle: "st", APNSCollapseID: "a"},
				Android: &NotifyVendor{Sound: "s", ChannelID: "c", ClickAction: ClickActionIntent, Intent: "i"},
				Huawei:  &NotifyHuawei{NotifyVendor: NotifyVendor{ClickAction: ClickActionOpenApp}, BadgeClass: "b"},
				Xiaomi:  &NotifyVendor{Sound: "x"},
				OPPO:    &NotifyVendor{Sound: "o"},
				Vivo:    &NotifyVivo{NotifyVendor: NotifyVendor{Sound: "v"}, PushMode: 1, Classification: 1},
				Flyme:   &NotifyVendor{Sound: "f"},
				FCM:     &NotifyVendor{Sound: "g"},
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.p.JobType() != Notify {
				t.Fatalf("JobType = %s", tt.p.JobType())
			}
			job, err := NewJob("job-1", tt.p)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := json.Marshal(job)
			d, jerr := decodeNotifyJob(data)
			if jerr != nil {
				t.Fatalf("Decode: %v\n%s", jerr, data)
			}
			want := tt.p
			var targets []string
			for _, c := range d.Calls {
				checkCall(t, c)
				var got NotifyPayload
				if err := json.Unmarshal(c.Body, &got); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got.Message, want.Message) {
					t.Errorf("message\n got %+v\nwant %+v", got.Message, want.Message)
				}
				if got.Setting == nil || got.Setting.RequestID == "" {
					t.Fatalf("no setting.request_id: %s", c.Body)
				}
				if want.Setting != nil {
					s := *got.Setting
					s.RequestID = want.Setting.RequestID
					if !reflect.DeepEqual(&s, want.Setting) {
						t.Errorf("setting = %+v, want %+v", got.Setting, want.Setting)
					}
				}
				if a, ok := got.Audience.(map[string]any); ok {
					l, _ := a["push_token"].([]any)
					for _, v := range l {
						s, _ := v.(string)
						targets = append(targets, s)
					}
				}
			}
			if a, ok := want.Audience.(NotifyAudience); ok && a.PushToken != nil && !reflect.DeepEqual(targets, a.PushToken) {
				t.Errorf("push tokens over all calls differ from the payload's")
			}
		})
	}
}
