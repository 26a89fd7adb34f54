package jobs

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// decodeKinds are the error kinds Decode may return.
var decodeKinds = map[ErrorKind]bool{
	KindInvalidJob:       true,
	KindUnknownType:      true,
	KindCredentialsInJob: true,
	KindTooLarge:         true,
}

// FuzzDecode feeds arbitrary subjects and job data to Decode and checks its invariants:
// it never panics; an accepted job has calls whose bodies are JSON objects without
// credential fields and whose weights are at least 1; a rejected job has a known kind.
func FuzzDecode(f *testing.F) {
	seeds := []struct{ subject, data string }{
		// valid jobs of every type
		{"push.jobs.p2p", `{"request_id":"r1","app":"default","not_after":"2026-11-23T10:00:00Z","reply_subject":"push.results.orders","payload":{"fromAccount":"shop","toAccount":"u42","msg":"Your order shipped"}}`},
		{"push.jobs.p2p", `{"payload":{"fromAccount":"a","fromResource":"r","toAccount":"b","msg":"aGk=","msgType":"base64","isStore":true,"bizType":"x"}}`},
		{"push.jobs.p2p_more", `{"payload":{"fromAccount":"a","toAccounts":["b","c"],"msg":"m"}}`},
		{"push.jobs.p2t", `{"payload":{"fromAccount":"a","topicId":9223372036854775807,"msg":"m"}}`},
		{"push.jobs.p2t_more", `{"payload":{"fromAccount":"a","topicIds":[1,"2"],"msg":"m"}}`},
		{"push.jobs.ucs", `{"payload":{"fromAccount":"a","topicId":"123","message":"m"}}`},
		{"push.jobs.ucs_multi_msg", `{"payload":{"fromAccount":"a","topicId":1,"messages":["m1","m2"]}}`},
		{"push.jobs.ucs_multi_topic", `{"payload":{"fromAccount":"a","topicIds":[1,2,3],"message":"m"}}`},
		{"push.jobs.notify", `{"request_id":"n1","payload":{"audience":"all","message":{"type":"text","title":"t","body":"b"}}}`},
		{"push.jobs.notify", `{"payload":{"audience":{"user_id":[1234567890123456789,"42"]},"setting":{"request_id":"c","distribution_strategy":"combined","ospush_sequence":["ups","fcm"]},"message":{"type":"image","attachment_url":"https://x.com/a.jpg?x=1","badge":"+1","ext":{"k":1.50},"show_begin_time":1,"show_end_time":2,"ios":{"content_available":true},"huawei":{"badge_class":"b"},"vivo":{"push_mode":1,"classification":0,"click_action":"intent","intent":"i"}}}}`},
		{"push.jobs.notify", `{"payload":{"audience":{"push_token":["` + strings.Repeat(`t","`, 1200) + `t"]},"message":{}}}`},
		// invalid ones
		{"push.jobs.p2p", ``},
		{"push.jobs.p2p", `not json`},
		{"push.jobs.p2p", `[]`},
		{"push.jobs.p2p", `{"payload":null}`},
		{"push.jobs.p2p", `{"payload":{"fromAccount":"a","toAccount":"b","msg":"m","appKey":"k"}}`},
		{"push.jobs.p2p", `{"payload":{"fromAccount":"a","toAccount":"b","msg":"!!","msgType":"base64"}}`},
		{"push.jobs.p2p", `{"request_id":"","reply_subject":"push.results.>","not_after":"soon","payload":{}}`},
		{"push.jobs.p2t_more", `{"payload":{"fromAccount":"a","topicIds":[1.5,99999999999999999999],"msg":"m"}}`},
		{"push.jobs.nope", `{"payload":{}}`},
		{"push.jobs.", `{}`},
		{"other.subject", `{"payload":{}}`},
		{"push.jobs.notify", `{"payload":{"audience":{"tag":["a"],"alias":["b"]},"message":{"type":"image"}}}`},
		{"push.jobs.notify", `{"payload":{"audience":"all","message":{"vivo":{"classification":2}},"access_token":"x"}}`},
		{"push.jobs.notify", "{\"payload\":{\"audience\":\"all\",\"message\":{\"title\":\"\xff\"}}}"},
	}
	for _, s := range seeds {
		f.Add(s.subject, []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		d, err := Decode(Meta{Subject: subject, Seq: 1}, data, Options{})
		if d == nil {
			t.Fatal("Decode returned no *Decoded")
		}
		if !validRequestID(d.RequestID) {
			t.Errorf("request id %q is not valid", d.RequestID)
		}
		// Fails until decodeStrict refuses trailing "}" or "]" (see TestDecodeTrailingData).
		if d.JSON != nil && !json.Valid(d.JSON) {
			t.Errorf("Decoded.JSON is not valid JSON: %q", d.JSON)
		}
		// The one-pass reader (jsontext) and encoding/json agree on what is a JSON object.
		isObject := json.Valid(data) && bytes.HasPrefix(bytes.TrimSpace(data), []byte("{"))
		if err != nil && strings.HasPrefix(err.Detail, "job is not a valid JSON object") && isObject {
			t.Errorf("rejected as not JSON (%s), but encoding/json reads an object: %q", err.Detail, data)
		}
		if d.JSON != nil && !isObject {
			t.Errorf("read as a JSON object, but encoding/json does not: %q", data)
		}
		if err != nil {
			if !decodeKinds[err.Kind] {
				t.Errorf("error kind %q is not one Decode returns", err.Kind)
			}
			if err.Detail == "" {
				t.Error("error without detail")
			}
			if d.Calls != nil {
				t.Errorf("rejected job has %d calls", len(d.Calls))
			}
			return
		}
		if d.Spec == nil || string(d.Spec.Type) != d.Type {
			t.Fatalf("accepted job of type %q has spec %v", d.Type, d.Spec)
		}
		if len(d.Calls) == 0 {
			t.Fatal("accepted job has no calls")
		}
		for i, c := range d.Calls {
			if c.Weight < 1 {
				t.Errorf("call %d: weight %d", i, c.Weight)
			}
			var body map[string]json.RawMessage
			if !json.Valid(c.Body) || json.Unmarshal(c.Body, &body) != nil {
				t.Fatalf("call %d: body is not a JSON object: %q", i, c.Body)
			}
			for _, k := range CredentialFields {
				if _, ok := body[k]; ok {
					t.Errorf("call %d: body has the credential field %s", i, k)
				}
			}
			if d.Spec.Type == Notify {
				checkNotifyBody(t, i, body)
			}
		}
	})
}

// checkNotifyBody checks a notify call: at most MaxAudience targets and a request id.
func checkNotifyBody(t *testing.T, i int, body map[string]json.RawMessage) {
	t.Helper()
	var setting struct {
		RequestID string `json:"request_id"`
	}
	if json.Unmarshal(body["setting"], &setting) != nil || setting.RequestID == "" {
		t.Errorf("call %d: no setting.request_id: %s", i, body["setting"])
	}
	var all string
	if json.Unmarshal(body["audience"], &all) == nil {
		if all != AudienceAll {
			t.Errorf("call %d: audience %q", i, all)
		}
		return
	}
	var lists map[string][]json.RawMessage
	if err := json.Unmarshal(body["audience"], &lists); err != nil || len(lists) != 1 {
		t.Fatalf("call %d: audience %s", i, body["audience"])
	}
	for k, l := range lists {
		if len(l) == 0 || len(l) > MaxAudience {
			t.Errorf("call %d: audience.%s has %d targets", i, k, len(l))
		}
	}
}

// TestDecodeTrailingData is the fuzzer's first find: a job followed by a stray "}" or "]"
// is accepted, and its Decoded.JSON (kept for the DLQ) is not valid JSON, so that a
// json.RawMessage holding it cannot be marshaled.
func TestDecodeTrailingData(t *testing.T) {
	for _, data := range []string{
		`{"payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}}`,
		`{"payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}]`,
		`{}}`,
	} {
		d, err := Decode(Meta{Subject: "push.jobs.p2p", Seq: 1}, []byte(data), Options{})
		if err == nil || err.Kind != KindInvalidJob {
			t.Errorf("%s: err = %v, want %s", data, err, KindInvalidJob)
		}
		if d.JSON != nil && !json.Valid(d.JSON) {
			t.Errorf("%s: Decoded.JSON is not valid JSON", data)
		}
	}
}

// TestRejectedJobKeepsItsIDs: a job rejected for one envelope member (an unknown field, a
// wrong type) or for its size still answers under its own request id, app and reply subject,
// so that the producer sees the rejection; a reply subject that is itself invalid is not used.
func TestRejectedJobKeepsItsIDs(t *testing.T) {
	payload := `"payload":{"fromAccount":"a","toAccount":"b","msg":"m"}`
	for _, c := range []struct {
		name, data string
		max        int
		kind       ErrorKind
		reply      string
	}{
		{"unknown field first", `{"priority":1,"request_id":"r-1","app":"shop","reply_subject":"push.results.mine",` + payload + `}`, 0, KindInvalidJob, "push.results.mine"},
		{"unknown field last", `{"request_id":"r-1","app":"shop","reply_subject":"push.results.mine",` + payload + `,"priority":1}`, 0, KindInvalidJob, "push.results.mine"},
		{"not_after a number", `{"not_after":5,"request_id":"r-1","app":"shop","reply_subject":"push.results.mine",` + payload + `}`, 0, KindInvalidJob, "push.results.mine"},
		{"too large", `{"request_id":"r-1","app":"shop","reply_subject":"push.results.mine",` + payload + `}`, 40, KindTooLarge, "push.results.mine"},
		{"bad reply subject", `{"request_id":"r-1","app":"shop","reply_subject":"other.x",` + payload + `}`, 0, KindInvalidJob, "push.results.p2p"},
	} {
		d, err := Decode(Meta{Subject: "push.jobs.p2p", Seq: 9}, []byte(c.data), Options{MaxBytes: c.max})
		if err == nil || err.Kind != c.kind {
			t.Errorf("%s: err = %v, want %s", c.name, err, c.kind)
			continue
		}
		if d.RequestID != "r-1" || d.App != "shop" || d.ReplySubject != c.reply {
			t.Errorf("%s: request id %q, app %q, reply subject %q; want r-1, shop, %s", c.name, d.RequestID, d.App, d.ReplySubject, c.reply)
		}
	}
	// An app that is not a string is not used; the rest is.
	d, err := Decode(Meta{Subject: "push.jobs.p2p", Seq: 9}, []byte(`{"app":5,"request_id":"r-2",`+payload+`}`), Options{})
	if err == nil || d.RequestID != "r-2" || d.App != "default" {
		t.Errorf("app 5: err %v, request id %q, app %q", err, d.RequestID, d.App)
	}
}
