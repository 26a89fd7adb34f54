package api

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream/sandbox"
)

// TestAgainstSandbox runs every endpoint against the project's sandbox upstream, checking
// the effect on its state.
func TestAgainstSandbox(t *testing.T) {
	sb := sandbox.New(sandbox.DefaultConfig())
	base, err := sb.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	h := newHarness(t, func(o *harnessOpts) {
		o.baseURL = base
		o.mimc = &config.MIMCCreds{AppID: sandbox.DefaultMIMCAppID, AppKey: config.NewSecret(sandbox.DefaultMIMCAppKey), AppSecret: config.NewSecret(sandbox.DefaultMIMCAppSecret)}
		o.notify = &config.NotifyCreds{AppID: sandbox.DefaultNotifyAppID, AccessToken: config.NewSecret(sandbox.DefaultNotifyToken)}
	})

	r := h.ask("topic.create", `{"account":"张三","topicName":"群聊","extra":"{\"k\":1}"}`)
	mustOK(t, "create", r)
	var created struct {
		TopicID jobs.TopicID `json:"topicId"`
	}
	if err := json.Unmarshal(r.Data, &created); err != nil {
		t.Fatalf("create data %s: %v", r.Data, err)
	}
	id := int64(created.TopicID)
	info, ok := sb.Topic(id)
	if !ok || info.Owner != "张三" || info.Name != "群聊" {
		t.Fatalf("sandbox topic %+v (found %v): the base64 owner was not understood", info, ok)
	}
	for i := 0; i < 249; i++ {
		sb.AddMember(id, fmt.Sprintf("m%03d", i))
	}

	r = h.ask("topic.members", map[string]any{"topicId": strconv.FormatInt(id, 10), "all": true})
	mustOK(t, "members all", r)
	var all struct {
		Members []struct {
			UUID json.RawMessage `json:"uuid"`
		} `json:"members"`
		Count int  `json:"count"`
		IsEnd bool `json:"isEnd"`
	}
	if err := json.Unmarshal(r.Data, &all); err != nil || all.Count != 250 || len(all.Members) != 250 || !all.IsEnd {
		t.Fatalf("members all: count %d, %d members, isEnd %v (%v)", all.Count, len(all.Members), all.IsEnd, err)
	}
	uuids := map[string]bool{}
	for _, m := range all.Members {
		uuids[string(m.UUID)] = true
	}
	if len(uuids) != 250 {
		t.Fatalf("%d distinct members, want 250", len(uuids))
	}

	mustOK(t, "update", h.ask("topic.update", map[string]any{"account": "张三", "topicId": id, "topicName": "renamed", "ownerAccount": "m007"}))
	if info, _ := sb.Topic(id); info.Name != "renamed" || info.Owner != "m007" {
		t.Fatalf("after update: %+v", info)
	}
	mustFail(t, "update by non-owner", h.ask("topic.update", map[string]any{"account": "张三", "topicId": id, "extra": "x"}),
		CodeRejected, jobs.KindUpstreamRejected, "")

	mustOK(t, "forbid", h.ask("topic.forbid", map[string]any{"topicId": id, "user": "m001", "forbidSeconds": 3600}))
	if _, ok := sb.ForbiddenUntil(id, "m001"); !ok {
		t.Fatal("the ban did not reach the sandbox")
	}

	sb.SetOnline(id, 42)
	r = h.ask("topic.online", map[string]any{"topicId": id})
	mustOK(t, "online", r)
	var online struct {
		UserCnt json.RawMessage `json:"userCnt"`
	}
	_ = json.Unmarshal(r.Data, &online)
	if n, ok := parseInt(online.UserCnt, true); !ok || n != 42 {
		t.Fatalf("online data %s", r.Data)
	}

	r = h.ask("topic.info", map[string]any{"topicId": id})
	mustOK(t, "info", r)

	r = h.ask("topic.list", `{"account":"m100"}`)
	mustOK(t, "list", r)
	var ids []jobs.TopicID
	if err := json.Unmarshal(r.Data, &ids); err != nil || !slices.Contains(ids, jobs.TopicID(id)) {
		t.Fatalf("list data %s, want it to hold %d", r.Data, id)
	}

	mustOK(t, "delete", h.ask("topic.delete", map[string]any{"topicId": id, "account": "m007"}))
	if _, ok := sb.Topic(id); ok {
		t.Fatal("the topic was not deleted")
	}
	mustFail(t, "info after delete", h.ask("topic.info", map[string]any{"topicId": id}), CodeRejected, jobs.KindUpstreamRejected, "not exist")

	r = h.ask("certificate", `{"environment":0,"provider":7}`)
	mustOK(t, "certificate", r)
	r = h.ask("task.detail", `{"task_ids":[1,2]}`)
	mustOK(t, "task detail", r)
}
