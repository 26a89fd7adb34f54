package notifystats

import (
	"encoding/json"
	"regexp"
	"testing"

	"github.com/pushworker/pushworker/jobs"
)

func TestKeysAreValid(t *testing.T) {
	valid := regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)
	for _, app := range []string{"default", "shop", "ünïcode app", "a.b>c*", "x/y"} {
		k := taskKey(app, -42)
		if !valid.MatchString(k) {
			t.Errorf("task key %q of app %q is not a valid KV key", k, app)
		}
		r := replicaKey(app)
		if !valid.MatchString(r) {
			t.Errorf("replica key %q is not a valid KV key", r)
		}
		if id, ok := replicaFromKey(r); !ok || id != app {
			t.Errorf("replicaFromKey(%q) = %q, %v", r, id, ok)
		}
	}
}

func TestParseDetail(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    map[int64]jobs.ChannelStats // huawei counters per task
		wantErr bool
	}{
		{"numbers", `[{"task_id":7,"huawei_target":10,"huawei_sent":9,"huawei_received":7}]`, map[int64]jobs.ChannelStats{7: {Target: 10, Sent: 9, Received: 7}}, false},
		{"strings and nulls", `[{"task_id":"8","huawei_target":"3","huawei_sent":null}]`, map[int64]jobs.ChannelStats{8: {Target: 3}}, false},
		{"no task id", `[{"huawei_target":1},{"task_id":9}]`, map[int64]jobs.ChannelStats{9: {}}, false},
		{"empty", `[]`, map[int64]jobs.ChannelStats{}, false},
		{"not a list", `true`, nil, true},
		{"object", `{"task_id":1}`, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDetail(json.RawMessage(tc.data))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d tasks, want %d", len(got), len(tc.want))
			}
			for id, hw := range tc.want {
				st := got[id]
				if len(st) != len(channels) {
					t.Errorf("task %d: %d channels, want %d", id, len(st), len(channels))
				}
				if st["huawei"] != hw {
					t.Errorf("task %d huawei = %+v, want %+v", id, st["huawei"], hw)
				}
			}
		})
	}
}

func TestRendezvousMovesOnlyTheLeaversTasks(t *testing.T) {
	three := []string{"a", "b", "c"}
	two := []string{"a", "c"}
	hs := func(ids []string) []uint64 {
		out := make([]uint64, len(ids))
		for i, id := range ids {
			out[i] = hash64(id)
		}
		return out
	}
	h3, h2 := hs(three), hs(two)
	count := map[string]int{}
	for i := range 3000 {
		k := taskKey("default", int64(i))
		before, after := owner(k, three, h3), owner(k, two, h2)
		count[before]++
		if before != "b" && before != after {
			t.Fatalf("key %s moved from %s to %s though %s stayed", k, before, after, before)
		}
		if after == "b" {
			t.Fatalf("key %s still on the replica that left", k)
		}
	}
	for _, id := range three {
		if count[id] < 800 {
			t.Errorf("uneven assignment: %v", count)
		}
	}
}
