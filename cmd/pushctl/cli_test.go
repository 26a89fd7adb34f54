package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pushworker/pushworker/broker"
)

func TestParseAudience(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"all", `"all"`},
		{"tag:a,b", `{"tag":["a","b"]}`},
		{"alias: x ,y", `{"alias":["x","y"]}`},
		{"user_id:9223372036854775807", `{"user_id":[9223372036854775807]}`},
		{"push_token:t1", `{"push_token":["t1"]}`},
	} {
		got, err := parseAudience(c.in)
		if err != nil || string(got) != c.want {
			t.Errorf("parseAudience(%q) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "everyone", "tag:", "color:red", "user_id:-1", "user_id:1x"} {
		if _, err := parseAudience(bad); err == nil {
			t.Errorf("parseAudience(%q) accepted", bad)
		}
	}
}

func TestPrepareLine(t *testing.T) {
	n := broker.Names{Subject: "push", Stream: "PUSH"}
	const p2p = `"payload":{"fromAccount":"a","toAccount":"b","msg":"m"}`
	for _, c := range []struct {
		name, line, defType string
		subject, reqID      string // want; empty reqID: generated
		same                bool   // data is the line itself
		bad                 string // want this error
	}{
		{name: "bare envelope", line: `{"request_id":"x",` + p2p + `}`, defType: "p2p", subject: "push.jobs.p2p", reqID: "x", same: true},
		{name: "typed line wins", line: `{"type":"p2p","request_id":"x",` + p2p + `}`, defType: "notify", subject: "push.jobs.p2p", reqID: "x"},
		{name: "generated id", line: `{` + p2p + `}`, defType: "p2p", subject: "push.jobs.p2p"},
		{name: "no type", line: `{"request_id":"x",` + p2p + `}`, bad: "no job type"},
		{name: "unknown type", line: `{"type":"fax",` + p2p + `}`, bad: `unknown job type "fax"`},
		{name: "array", line: `[1,2]`, defType: "p2p", bad: "not a JSON object"},
		{name: "broken", line: `{"a":`, defType: "p2p", bad: "not valid JSON"},
		{name: "invalid job", line: `{"payload":{"fromAccount":"a"}}`, defType: "p2p", bad: "payload.toAccount is required"},
		{name: "bad request id", line: `{"request_id":5,` + p2p + `}`, defType: "p2p", bad: "request_id must be"},
	} {
		t.Run(c.name, func(t *testing.T) {
			subject, data, id, skip, err := prepareLine([]byte(c.line+"\n"), c.defType, n, true)
			if c.bad != "" {
				if err == nil || !strings.Contains(err.Error(), c.bad) {
					t.Fatalf("err %v, want %q", err, c.bad)
				}
				return
			}
			if err != nil || skip || subject != c.subject {
				t.Fatalf("%s %v %v", subject, skip, err)
			}
			if c.reqID != "" && id != c.reqID || id == "" {
				t.Fatalf("request id %q", id)
			}
			if !strings.Contains(string(data), `"request_id":"`+id+`"`) || strings.Contains(string(data), `"type"`) {
				t.Fatalf("data %s", data)
			}
			if c.same && string(data) != c.line {
				t.Fatalf("data %s was rewritten", data)
			}
		})
	}
	if _, _, _, skip, err := prepareLine([]byte("  \r\n"), "p2p", n, true); !skip || err != nil {
		t.Fatal("a blank line must be skipped")
	}
}

func TestTimeFlags(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if got, _ := parseSince("90m", now); !got.Equal(now.Add(-90 * time.Minute)) {
		t.Errorf("since 90m = %v", got)
	}
	if got, _ := parseSince("2026-01-01T00:00:00Z", now); !got.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("since time = %v", got)
	}
	if _, err := parseSince("yesterday", now); err == nil {
		t.Error("parseSince accepted yesterday")
	}
	if got, _ := parseNotAfter("10m", now); got == nil || !got.Equal(now.Add(10*time.Minute)) {
		t.Errorf("not-after 10m = %v", got)
	}
	if _, err := parseNotAfter("-5m", now); err == nil {
		t.Error("parseNotAfter accepted a negative duration")
	}
}

func TestUsage(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "Commands:"},
		{[]string{"help"}, exitOK, "dlq"},
		{[]string{"help", "send"}, exitOK, "--file"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"dlq"}, exitUsage, "replay"},
		{[]string{"dlq", "purge"}, exitUsage, "unknown dlq command"},
		{[]string{"send"}, exitUsage, "send needs one job type"},
		{[]string{"results", "extra"}, exitUsage, "takes no arguments"},
		{[]string{"results", "--since", "soon"}, exitUsage, "--since"},
	} {
		var out, errs syncBuffer
		code := run(ctx, c.args, &out, &errs)
		if code != c.code || !strings.Contains(out.String()+errs.String(), c.want) {
			t.Errorf("%v: exit %d (want %d), output %q lacks %q", c.args, code, c.code, out.String()+errs.String(), c.want)
		}
	}
}
