package dashboard

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/pushworker/pushworker/jobs"
)

// notifyKeep is how many notify tasks the dashboard remembers (the most recently changed).
const notifyKeep = 500

// notifyTask is a notify task's latest delivery stats.
type notifyTask struct {
	jobs.NotifyStats
	Received time.Time `json:"received_at"`
}

// notifyStats keeps the latest stats of the most recently changed notify tasks.
type notifyStats struct {
	mu    sync.Mutex
	tasks map[int64]*notifyTask
}

func (n *notifyStats) add(now time.Time, data []byte) {
	var s jobs.NotifyStats
	if json.Unmarshal(data, &s) != nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.tasks == nil {
		n.tasks = map[int64]*notifyTask{}
	}
	n.tasks[s.TaskID] = &notifyTask{NotifyStats: s, Received: now}
	if len(n.tasks) > notifyKeep {
		// Drop the tenth that changed longest ago: amortized, the map stays bounded.
		all := n.sortedLocked()
		for _, t := range all[notifyKeep-notifyKeep/10:] {
			delete(n.tasks, t.TaskID)
		}
	}
}

// sortedLocked returns the tasks, most recently changed first. n.mu must be held.
func (n *notifyStats) sortedLocked() []*notifyTask {
	all := make([]*notifyTask, 0, len(n.tasks))
	for _, t := range n.tasks {
		all = append(all, t)
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].Received.Equal(all[j].Received) {
			return all[i].Received.After(all[j].Received)
		}
		return all[i].TaskID > all[j].TaskID
	})
	return all
}

// view returns up to limit tasks, most recently changed first.
func (n *notifyStats) view(limit int) []notifyTask {
	n.mu.Lock()
	defer n.mu.Unlock()
	all := n.sortedLocked()
	out := make([]notifyTask, 0, min(limit, len(all)))
	for _, t := range all[:min(limit, len(all))] {
		out = append(out, *t)
	}
	return out
}
