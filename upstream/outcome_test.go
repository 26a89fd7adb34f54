package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		name     string
		up       string
		shape    jobs.Shape
		err      error
		status   int
		body     string
		kind     Kind
		errKind  jobs.ErrorKind
		limited  bool
		packetID string
	}{
		{"sent", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 200, `{"code":200,"message":"success","data":{"packetId":"p-1"}}`, Sent, "", false, "p-1"},
		{"network", jobs.UpstreamMIMC, jobs.ShapePacketID, errors.New("connection refused"), 0, "", Retryable, jobs.KindUpstreamUnavailable, false, ""},
		{"timeout", jobs.UpstreamMIMC, jobs.ShapePacketID, context.DeadlineExceeded, 0, "", Retryable, jobs.KindUpstreamUnavailable, false, ""},
		{"5xx", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 503, ``, Retryable, jobs.KindUpstreamUnavailable, false, ""},
		{"408", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 408, ``, Retryable, jobs.KindUpstreamUnavailable, false, ""},
		{"429", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 429, ``, Retryable, jobs.KindUpstreamUnavailable, true, ""},
		{"rate message", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 200, `{"code":500,"message":"rate limit exceeded"}`, Retryable, jobs.KindUpstreamUnavailable, true, ""},
		{"401", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 401, `{"code":401}`, Configuration, jobs.KindUpstreamUnavailable, false, ""},
		{"403", jobs.UpstreamNotify, jobs.ShapeNotifyTask, nil, 403, ``, Configuration, jobs.KindUpstreamUnavailable, false, ""},
		{"400", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 400, `{"code":400,"message":"bad"}`, Permanent, jobs.KindUpstreamRejected, false, ""},
		{"404", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 404, ``, Permanent, jobs.KindUpstreamRejected, false, ""},
		{"malformed", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 200, `<html>`, Retryable, jobs.KindUpstreamUnavailable, false, ""},
		{"unknown MIMC code", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 200, `{"code":4001}`, Retryable, jobs.KindUpstreamUnavailable, false, ""},
		{"notify permanent", jobs.UpstreamNotify, jobs.ShapeNotifyTask, nil, 200, `{"code":10002}`, Permanent, jobs.KindUpstreamRejected, false, ""},
		{"notify 12005", jobs.UpstreamNotify, jobs.ShapeNotifyTask, nil, 200, `{"code":12005}`, Permanent, jobs.KindUpstreamRejected, false, ""},
		{"notify configuration", jobs.UpstreamNotify, jobs.ShapeNotifyTask, nil, 200, `{"code":40000}`, Configuration, jobs.KindUpstreamUnavailable, false, ""},
		{"notify retryable", jobs.UpstreamNotify, jobs.ShapeNotifyTask, nil, 200, `{"code":20000}`, Retryable, jobs.KindUpstreamUnavailable, false, ""},
		{"notify data true", jobs.UpstreamNotify, jobs.ShapeNotifyTask, nil, 200, `{"code":200,"data":true}`, Sent, "", false, ""},
		{"partial", jobs.UpstreamMIMC, jobs.ShapeMultiTopic, nil, 200, `{"code":200,"data":{"succPacketIds":["a"],"failTopicIds":[9223372036854775807]}}`, Partial, jobs.KindUpstreamRejected, false, ""},
		{"code as a string, numeric id", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 200, `{"code":"200","data":{"packetId":123}}`, Sent, "", false, "123"},
		{"escaped id", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 200, `{"code":200,"data":{"packetId":"a\u002db"}}`, Sent, "", false, "a-b"},
		{"names in another case", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 200, `{"Code":200,"Data":{"PacketId":"p"}}`, Sent, "", false, "p"},
		{"code not a number", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 200, `{"code":"ok"}`, Retryable, jobs.KindUpstreamUnavailable, false, ""},
		{"trailing data", jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 200, `{"code":200}{"code":500}`, Retryable, jobs.KindUpstreamUnavailable, false, ""},
		{"all topics failed", jobs.UpstreamMIMC, jobs.ShapeMultiTopic, nil, 200, `{"code":200,"data":{"succPacketIds":[],"failTopicIds":[1]}}`, Permanent, jobs.KindUpstreamRejected, false, ""},
	}
	for _, c := range cases {
		o := Classify(c.up, c.shape, c.err, c.status, []byte(c.body))
		if o.Kind != c.kind || o.RateLimited != c.limited || o.PacketID != c.packetID {
			t.Fatalf("%s: outcome %+v", c.name, o)
		}
		if (o.Err == nil) != (c.errKind == "") || (o.Err != nil && o.Err.Kind != c.errKind) {
			t.Fatalf("%s: error %+v, want kind %q", c.name, o.Err, c.errKind)
		}
		if c.err == nil && (o.Answer == nil || o.Answer.HTTPStatus != c.status) {
			t.Fatalf("%s: answer %+v", c.name, o.Answer)
		}
	}
	o := Classify(jobs.UpstreamMIMC, jobs.ShapeMultiTopic, nil, 200, []byte(`{"code":200,"data":{"succPacketIds":["a"],"failTopicIds":[9223372036854775807]}}`))
	if o.FailTopicIDs[0] != "9223372036854775807" {
		t.Fatalf("fail topic id lost digits: %v", o.FailTopicIDs)
	}
	for _, body := range []string{`{"code":200,"data":{"task_id":77}}`, `{"code":200,"data":{"task_id":"77"}}`} {
		o = Classify(jobs.UpstreamNotify, jobs.ShapeNotifyTask, nil, 200, []byte(body))
		if o.TaskID == nil || *o.TaskID != 77 {
			t.Fatalf("%s: task id %v", body, o.TaskID)
		}
	}
	o = Classify(jobs.UpstreamMIMC, jobs.ShapePacketIDs, nil, 200, []byte(`{"code":200,"message":"成功","data":{"packetIds":["x",7]}}`))
	if strings.Join(o.PacketIDs, ",") != "x,7" || o.Answer.Message != "成功" {
		t.Fatalf("packet ids %v, message %q", o.PacketIDs, o.Answer.Message)
	}
}

// TestClientScrubsEchoedSecrets: an upstream that echoes the app's secret in its message
// yields an outcome without it.
func TestClientScrubsEchoedSecrets(t *testing.T) {
	const secret = "app-S3CRET-echo"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"code":401,"message":"bad appSecret `+secret+`"}`)
	}))
	defer srv.Close()
	c := &Client{HTTP: NewHTTPClient(2*time.Second, 16), MIMCURL: srv.URL, Scrub: config.NewScrubber([]string{secret})}
	app := &config.App{Name: "default", MIMC: &config.MIMCCreds{AppID: "1", AppKey: config.NewSecret("k"), AppSecret: config.NewSecret(secret)}}
	spec, _ := jobs.Lookup("p2p")
	o := c.Push(context.Background(), spec, app, []byte(`{"fromAccount":"a"}`))
	if o.Kind != Configuration || strings.Contains(o.Err.Detail, secret) || strings.Contains(o.Answer.Message, secret) {
		t.Fatalf("outcome %+v %+v %+v", o, o.Err, o.Answer)
	}
	if c.Host(jobs.UpstreamMIMC) != strings.TrimPrefix(srv.URL, "http://") {
		t.Fatalf("host %q", c.Host(jobs.UpstreamMIMC))
	}
}
