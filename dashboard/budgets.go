package dashboard

import (
	"sort"
	"sync"
	"time"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/limiter"
)

// peers holds the replicas' last heartbeats of the rate budget bucket.
type peers struct {
	mu sync.Mutex
	m  map[string]peer
}

type peer struct {
	hb   limiter.Heartbeat
	seen time.Time // local time it arrived
}

func (p *peers) put(key string, value []byte, now time.Time) {
	hb, err := limiter.DecodeHeartbeat(value)
	if err != nil {
		return
	}
	if hb.Replica == "" {
		hb.Replica = key
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]peer{}
	}
	p.m[key] = peer{hb: hb, seen: now}
}

func (p *peers) remove(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, key)
}

func (p *peers) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.m)
}

// replicaShare is one replica's part of an (app, class) budget.
type replicaShare struct {
	Replica string  `json:"replica"`
	Share   float64 `json:"share"` // fraction of the rate it claims
	Used    float64 `json:"used"`  // tokens per second it sent (the second before its heartbeat)
	Asked   float64 `json:"asked"` // tokens per second it asked for lately
	Hungry  bool    `json:"hungry"`
}

// budgetRow is one app × rate class.
type budgetRow struct {
	App      string         `json:"app"`
	Class    string         `json:"class"`
	Rate     float64        `json:"rate"`  // tokens per second, all replicas together
	Used     float64        `json:"used"`  // tokens per second sent, all replicas together
	Asked    float64        `json:"asked"` // tokens per second asked for, all replicas together
	Replicas []replicaShare `json:"replicas"`
}

// replicaRow is one replica of the worker as the budget bucket knows it.
type replicaRow struct {
	Replica       string    `json:"replica"`
	Self          bool      `json:"self"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	AgeMS         int64     `json:"age_ms"`
	Alive         bool      `json:"alive"`
	Budgets       int       `json:"budgets"` // (app, class) pairs it reports
}

// view returns the budget of every configured app and class with the live replicas'
// shares, and the replicas.
func (p *peers) view(c config.Config, self string, now time.Time) ([]budgetRow, []replicaRow) {
	p.mu.Lock()
	defer p.mu.Unlock()
	type key struct{ app, class string }
	rows := map[key]*budgetRow{}
	var order []key
	for _, app := range c.AppNames() {
		for _, class := range config.Classes {
			k := key{app, class}
			rows[k] = &budgetRow{App: app, Class: class, Rate: c.Apps[app].Rate(class), Replicas: []replicaShare{}}
			order = append(order, k)
		}
	}
	reps := make([]replicaRow, 0, len(p.m))
	for id, pr := range p.m {
		alive := pr.hb.Alive(pr.seen, now)
		reps = append(reps, replicaRow{Replica: id, Self: id == self, LastHeartbeat: pr.hb.At, AgeMS: now.Sub(pr.seen).Milliseconds(), Alive: alive, Budgets: len(pr.hb.Budgets)})
		if !alive {
			continue
		}
		for _, b := range pr.hb.Budgets {
			row := rows[key{b.App, b.Class}]
			if row == nil {
				continue // an app another replica knows and this one does not
			}
			row.Replicas = append(row.Replicas, replicaShare{Replica: id, Share: b.Share, Used: b.Sent * row.Rate, Asked: b.Used * row.Rate, Hungry: b.Hungry})
			row.Used += b.Sent * row.Rate
			row.Asked += b.Used * row.Rate
		}
	}
	out := make([]budgetRow, 0, len(order))
	for _, k := range order {
		r := rows[k]
		sort.Slice(r.Replicas, func(i, j int) bool { return r.Replicas[i].Replica < r.Replicas[j].Replica })
		out = append(out, *r)
	}
	sort.Slice(reps, func(i, j int) bool { return reps[i].Replica < reps[j].Replica })
	return out, reps
}
