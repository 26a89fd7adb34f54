package notifystats

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pushworker/pushworker/jobs"
)

// Keys of the stats bucket. Both segments after the prefix are base64url (no padding), so
// any app name or replica id gives a valid key.
const (
	taskPrefix    = "t."
	replicaPrefix = "r."
)

var b64 = base64.RawURLEncoding

// taskKey is the key of one tracked task: t.<base64url app>.<task id>.
func taskKey(app string, taskID int64) string {
	return taskPrefix + b64.EncodeToString([]byte(app)) + "." + strconv.FormatInt(taskID, 10)
}

// replicaKey is the heartbeat key of a replica: r.<base64url id>.
func replicaKey(id string) string { return replicaPrefix + b64.EncodeToString([]byte(id)) }

// replicaFromKey returns the replica id of a heartbeat key.
func replicaFromKey(key string) (string, bool) {
	b, err := b64.DecodeString(strings.TrimPrefix(key, replicaPrefix))
	if err != nil {
		return "", false
	}
	return string(b), true
}

// task is the stored state of one tracked notify task.
type task struct {
	App       string    `json:"app"`
	RequestID string    `json:"request_id"`
	TaskID    int64     `json:"task_id"`
	TrackedAt time.Time `json:"tracked_at"`
	// Stats is the last published snapshot; nil before the first answer for the task.
	Stats map[string]jobs.ChannelStats `json:"stats,omitempty"`
	// PolledAt is when Stats was taken.
	PolledAt time.Time `json:"polled_at,omitzero"`
}

// heartbeat is the value of a replica key.
type heartbeat struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// entry is a task as mirrored from the bucket, with the revision to compare-and-set.
type entry struct {
	key string
	t   task
	rev uint64
}

// mirror is this replica's copy of the bucket, kept current by a watcher: every tracked
// task and when each replica's heartbeat was last seen (by the local clock, so replicas'
// clocks need not agree).
type mirror struct {
	mu       sync.Mutex
	tasks    map[string]entry
	replicas map[string]time.Time
}

func newMirror() *mirror {
	return &mirror{tasks: map[string]entry{}, replicas: map[string]time.Time{}}
}

// putTask records e unless the mirror already holds a later revision of its key.
func (m *mirror) putTask(e entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.tasks[e.key]; ok && old.rev >= e.rev {
		return
	}
	m.tasks[e.key] = e
}

// dropTask forgets key unless the mirror holds a revision later than rev.
func (m *mirror) dropTask(key string, rev uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.tasks[key]; ok && old.rev > rev {
		return
	}
	delete(m.tasks, key)
}

func (m *mirror) seen(id string, at time.Time) {
	m.mu.Lock()
	if at.After(m.replicas[id]) {
		m.replicas[id] = at
	}
	m.mu.Unlock()
}

func (m *mirror) gone(id string) {
	m.mu.Lock()
	delete(m.replicas, id)
	m.mu.Unlock()
}

// live returns the replicas whose heartbeat was seen within deadAfter of now, sorted. It
// forgets replicas long dead (their keys expire with the bucket's max age, which the
// watcher does not report).
func (m *mirror) live(now time.Time, deadAfter time.Duration) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.replicas))
	for id, at := range m.replicas {
		switch age := now.Sub(at); {
		case age < deadAfter:
			out = append(out, id)
		case age > 20*deadAfter:
			delete(m.replicas, id)
		}
	}
	sort.Strings(out)
	return out
}

// owned returns the tasks that rendezvous hashing over live assigns to self.
func (m *mirror) owned(self string, live []string) []entry {
	hs := make([]uint64, len(live))
	for i, id := range live {
		hs[i] = hash64(id)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []entry
	for k, e := range m.tasks {
		if owner(k, live, hs) == self {
			out = append(out, e)
		}
	}
	return out
}

// owner picks, among the live replicas (with their hashes hs), the one with the highest
// score for key (rendezvous hashing): every replica that sees the same live set picks the
// same owner, and when a replica leaves only its own keys move.
func owner(key string, live []string, hs []uint64) string {
	k := hash64(key)
	best, bestScore := "", uint64(0)
	for i, id := range live {
		if s := mix(k ^ hs[i]); best == "" || s > bestScore {
			best, bestScore = id, s
		}
	}
	return best
}

func hash64(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// mix is the splitmix64 finalizer: it spreads FNV's weak low bits over the whole word.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// channels are the delivery channels of POST /push/task/detail (notify-push.txt §4.3).
var channels = [...]string{"apns", "fcm", "flyme", "huawei", "mxpush", "oppo", "vivo", "xiaomi"}

// parseDetail reads the data of a /push/task/detail answer: a list of objects with task_id
// and <channel>_target|_sent|_received counters. Missing or null counters read as 0; items
// without a task id are skipped. Every returned map holds all channels.
func parseDetail(data json.RawMessage) (map[int64]map[string]jobs.ChannelStats, error) {
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(data, &items); err != nil {
		return nil, err
	}
	out := make(map[int64]map[string]jobs.ChannelStats, len(items))
	for _, it := range items {
		id, ok := number(it["task_id"])
		if !ok {
			continue
		}
		st := make(map[string]jobs.ChannelStats, len(channels))
		for _, ch := range channels {
			t, _ := number(it[ch+"_target"])
			s, _ := number(it[ch+"_sent"])
			r, _ := number(it[ch+"_received"])
			st[ch] = jobs.ChannelStats{Target: t, Sent: s, Received: r}
		}
		out[id] = st
	}
	return out, nil
}

// number reads a JSON integer given as a number or a decimal string.
func number(r json.RawMessage) (int64, bool) {
	s := strings.TrimSpace(string(r))
	if len(s) >= 2 && s[0] == '"' {
		s = s[1 : len(s)-1]
	}
	if s == "" || s == "null" {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return 0, false
		}
		v = int64(f)
	}
	return v, true
}

// sameStats reports whether two snapshots hold the same counters on every channel.
func sameStats(a, b map[string]jobs.ChannelStats) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	for _, ch := range channels {
		if a[ch] != b[ch] {
			return false
		}
	}
	return true
}

// statsHash fingerprints a snapshot's counters, in a fixed channel order.
func statsHash(st map[string]jobs.ChannelStats) uint64 {
	h := fnv.New64a()
	var buf [8]byte
	for _, ch := range channels {
		c := st[ch]
		for _, v := range [3]int64{c.Target, c.Sent, c.Received} {
			binary.BigEndian.PutUint64(buf[:], uint64(v))
			_, _ = h.Write(buf[:])
		}
	}
	return h.Sum64()
}
