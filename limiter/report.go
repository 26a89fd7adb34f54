package limiter

import (
	"encoding/json"
	"time"
)

// Heartbeat is one replica's last report in a Coordinator's bucket, as status displays
// (pushctl status, the dashboard) read it.
type Heartbeat struct {
	Replica string
	At      time.Time     // when the replica published it, by its clock
	Every   time.Duration // its heartbeat interval
	Budgets []BudgetReport
}

// BudgetReport is a replica's report on one (app, class).
type BudgetReport struct {
	App, Class string
	// Used is the fraction of the class's rate the replica asked for per second lately
	// (tokens per second ÷ the rate).
	Used float64
	// Sent is the fraction of the rate the replica sent in the second before the heartbeat.
	Sent float64
	// Hungry is set when callers queued for tokens lately.
	Hungry bool
	// Share is the fraction of the rate the replica claims; the share it uses is never
	// above it.
	Share float64
}

// DecodeHeartbeat reads a value of a Coordinator's bucket.
func DecodeHeartbeat(data []byte) (Heartbeat, error) {
	var hb heartbeat
	if err := json.Unmarshal(data, &hb); err != nil {
		return Heartbeat{}, err
	}
	out := Heartbeat{Replica: hb.Replica, At: hb.At, Every: time.Duration(hb.EveryMS) * time.Millisecond, Budgets: make([]BudgetReport, len(hb.Budgets))}
	for i, b := range hb.Budgets {
		out.Budgets[i] = BudgetReport{App: b.App, Class: b.Class, Used: b.Used, Sent: b.Sent, Hungry: b.Hungry, Share: b.Claim}
	}
	return out, nil
}

// Alive reports whether a replica whose heartbeat arrived at seen still counts as live at
// now, by the rule the Coordinators apply (three intervals without news).
func (h Heartbeat) Alive(seen, now time.Time) bool {
	every := h.Every
	if every <= 0 {
		every = DefaultCoordinatorEvery
	}
	return now.Sub(seen) <= deadAfter*every
}
