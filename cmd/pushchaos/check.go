package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// resultRec is one result message of PUSH_RESULTS.
type resultRec struct {
	RequestID string `json:"request_id"`
	Type      string `json:"type"`
	Status    string `json:"status"`
	JobSeq    uint64 `json:"job_seq"`
	Duplicate bool   `json:"duplicate"`
}

// dlqRec is one entry of PUSH_DLQ.
type dlqRec struct {
	RequestID string
	JobSeq    uint64
	Status    string
}

// checkInput is everything the invariants are checked on.
type checkInput struct {
	start       time.Time
	jobs        map[string]*pubJob
	results     []resultRec
	dlq         []dlqRec
	calls       []call
	events      []event
	rates       map[string]float64 // tokens per second per class (one app)
	jobsLeft    uint64             // messages left in PUSH_JOBS
	crashWindow time.Duration      // how long after a call's answer a worker's kill -9 explains a second acceptance
	stalls      []stall            // times the recorder itself was not running (its arrival times bunch up there)
	// rateTolerance is the excess over the rate a sliding second may hold besides one
	// replica's burst: 0.01 as the README says (the contract allows 0.05).
	rateTolerance float64
}

// stall is an interval in which the recorder's process did not run: calls that arrived
// meanwhile are stamped together when it runs again.
type stall struct{ From, To time.Time }

// minStall is the shortest stall of the recorder that excuses a second over the rate
// bound: 20 ms compress a second of arrivals by 2 %, more than the bound's slack.
const minStall = 20 * time.Millisecond

// invariant is one checked promise: how many things it was checked on and what broke it.
type invariant struct {
	Name       string
	Checked    int
	Failed     int      // checks that failed
	Violations []string // what failed (the first exampleLimit)
	Notes      []string // figures that explain the count (not violations)
}

// exampleLimit bounds the violations listed per invariant.
const exampleLimit = 20

func (v *invariant) fail(format string, a ...any) {
	v.Failed++
	if len(v.Violations) < exampleLimit {
		v.Violations = append(v.Violations, fmt.Sprintf(format, a...))
	}
}

// key is a stream message of a job: its request id and stream sequence.
type key struct {
	id  string
	seq uint64
}

// check evaluates every invariant.
func check(in checkInput) []invariant {
	return []invariant{
		checkResults(in),
		checkAccepted(in),
		checkUpstreamOnce(in),
		checkRate(in),
		checkJobsLeft(in),
		checkDLQ(in),
		checkSIGTERM(in),
	}
}

// checkResults: every published stream message has exactly one result carrying its
// request id and job_seq, and nothing else has one; invalid jobs are rejected.
func checkResults(in checkInput) invariant {
	v := invariant{Name: "every published job has exactly one final result (request id, job_seq)"}
	got := map[key]int{}
	status := map[key]string{}
	for _, r := range in.results {
		k := key{r.RequestID, r.JobSeq}
		got[k]++
		status[k] = r.Status
	}
	for _, j := range sortedJobs(in.jobs) {
		for _, seq := range j.Seqs {
			v.Checked++
			k := key{j.ID, seq}
			switch n := got[k]; {
			case n == 0:
				v.fail("%s (job_seq %d, %s): no result", j.ID, seq, j.Type)
			case n > 1:
				v.fail("%s (job_seq %d, %s): %d results", j.ID, seq, j.Type, n)
			}
			switch st := status[k]; {
			case st == "":
			case j.Kind == kindInvalid && st != "rejected":
				v.fail("%s (job_seq %d): an invalid job's result is %s, want rejected", j.ID, seq, st)
			case j.Kind != kindInvalid && st == "rejected":
				v.fail("%s (job_seq %d): a valid job was rejected", j.ID, seq)
			case j.Kind == kindValid && st == "expired":
				v.fail("%s (job_seq %d): a job without not_after expired", j.ID, seq)
			}
		}
	}
	var unknown, ambiguous int
	for k := range got {
		j := in.jobs[k.id]
		if j != nil && contains(j.Seqs, k.seq) {
			continue
		}
		if j != nil && j.Ambiguous {
			ambiguous++
			continue
		}
		unknown++
		if unknown <= 3 {
			v.fail("a result for %s job_seq %d, which the soak did not publish", k.id, k.seq)
		}
	}
	if ambiguous > 0 {
		v.Notes = append(v.Notes, fmt.Sprintf("%d results of publishes whose acknowledgement never came", ambiguous))
	}
	return v
}

// checkAccepted: per request id at most one result says the upstream accepted it
// (duplicate false, sent or partial), and every duplicate result replays such a result.
func checkAccepted(in checkInput) invariant {
	v := invariant{Name: "one accepted outcome per request id; every duplicate: true result replays it"}
	owners := map[string]int{}
	var dups []resultRec
	for _, r := range in.results {
		switch {
		case r.Duplicate:
			dups = append(dups, r)
		case r.Status == "sent" || r.Status == "partial":
			owners[r.RequestID]++
		}
	}
	ids := make([]string, 0, len(owners))
	for id := range owners {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		v.Checked++
		if owners[id] > 1 {
			v.fail("%s: %d results say the upstream accepted it, none a duplicate", id, owners[id])
		}
	}
	for _, r := range dups {
		v.Checked++
		if owners[r.RequestID] == 0 {
			v.fail("%s (job_seq %d): duplicate: true, but no result of that request id was accepted", r.RequestID, r.JobSeq)
		}
		if r.Status != "sent" && r.Status != "partial" {
			v.fail("%s (job_seq %d): a duplicate with status %s (only accepted results are remembered)", r.RequestID, r.JobSeq, r.Status)
		}
	}
	v.Notes = append(v.Notes, fmt.Sprintf("%d duplicate: true results", len(dups)))
	return v
}

// killSlack is how long before a call's time stamp the kill of the worker that made it may
// come: a call written just before the kill is read by the recorder later, later still
// when the recorder stalls (the soak saw stalls of 0.5 s on a busy machine).
const killSlack = time.Second

// checkUpstreamOnce: the upstream accepted each request id once, except in the crash
// window: a second acceptance whose first was made by a worker killed with SIGKILL while
// that call was on its way (up to killSlack before its time stamp) or after, and within
// crashWindow of its answer.
func checkUpstreamOnce(in checkInput) invariant {
	v := invariant{Name: "no request id accepted upstream twice, except in the crash window"}
	accepted := map[string][]call{}
	for _, c := range in.calls {
		if c.Accepted {
			accepted[c.RequestID] = append(accepted[c.RequestID], c)
		}
	}
	var kills []event
	for _, e := range in.events {
		if e.Kind == faultWorkerKill {
			kills = append(kills, e)
		}
	}
	ids := make([]string, 0, len(accepted))
	for id := range accepted {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	explained := 0
	for _, id := range ids {
		cs := accepted[id]
		v.Checked++
		if in.jobs[id] == nil {
			v.fail("%s: accepted upstream, but the soak published no such job", id)
			continue
		}
		sort.Slice(cs, func(i, j int) bool { return cs[i].At.Before(cs[j].At) })
		for i := 1; i < len(cs); i++ {
			first, again := cs[i-1], cs[i]
			var cause *event
			for k := range kills {
				e := &kills[k]
				if e.Slot == first.Slot && !e.At.Before(first.At.Add(-killSlack)) && !e.At.After(first.Answered.Add(in.crashWindow)) && !again.At.Before(e.At) {
					cause = e
					break
				}
			}
			if cause == nil {
				v.fail("%s: accepted via worker-%d at %s and again via worker-%d at %s, with no kill -9 of worker-%d in between",
					id, first.Slot, rel(in.start, first.At), again.Slot, rel(in.start, again.At), first.Slot)
				continue
			}
			explained++
			v.Notes = append(v.Notes, fmt.Sprintf("%s: accepted via worker-%d (answer at %s), worker-%d kill -9 at %s (%s after the answer), accepted again via worker-%d at %s",
				id, first.Slot, rel(in.start, first.Answered), cause.Slot, rel(in.start, cause.At), cause.At.Sub(first.Answered).Round(time.Millisecond), again.Slot, rel(in.start, again.At)))
		}
	}
	v.Notes = append([]string{fmt.Sprintf("%d double acceptances, each matched to a worker kill -9", explained)}, v.Notes...)
	return v
}

const rateName = "rate limit held in every sliding second (≤ rate + tolerance + one replica's burst or heaviest call)"

// rateBound is the most tokens a sliding second may hold at rate r: the rate plus 1 %,
// plus one replica's burst. The limiter's bucket holds 1 % of the replica's share (at least
// one token; a share is at most the whole rate), and a call heavier than that is let
// through whole once its tokens are due, so a replica's burst is the larger of the two.
func rateBound(r, tolerance float64, heaviest int) float64 {
	return r*(1+tolerance) + math.Max(float64(heaviest), math.Max(1, math.Ceil(r*0.01)))
}

// checkRate: no sliding second of upstream arrivals of a class holds more tokens than
// rateBound. Every call counts, whatever its answer: the worker spent its tokens.
func checkRate(in checkInput) invariant {
	v := invariant{Name: rateName}
	v.Notes = append(v.Notes, fmt.Sprintf("tolerance %.0f %% of the rate", 100*in.rateTolerance))
	byClass := map[string][]call{}
	for _, c := range in.calls {
		byClass[c.Class] = append(byClass[c.Class], c)
	}
	classes := make([]string, 0, len(byClass))
	for c := range byClass {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	for _, class := range classes {
		cs := byClass[class]
		sort.Slice(cs, func(i, j int) bool { return cs[i].At.Before(cs[j].At) })
		rate := in.rates[class]
		heaviest := 1
		for _, c := range cs {
			heaviest = max(heaviest, c.Weight)
		}
		bound := rateBound(rate, in.rateTolerance, heaviest)
		worst, worstAt, over := 0, time.Time{}, 0
		excused, worstExcused, longest := 0, 0, time.Duration(0)
		sum, left := 0, 0
		for _, c := range cs {
			sum += c.Weight
			for !cs[left].At.After(c.At.Add(-time.Second)) {
				sum -= cs[left].Weight
				left++
			}
			if sum > worst {
				worst, worstAt = sum, c.At
			}
			if rate > 0 && float64(sum) > bound {
				if st := stallIn(in.stalls, c.At.Add(-time.Second), c.At); st > 0 {
					excused++
					worstExcused = max(worstExcused, sum)
					longest = max(longest, st)
					continue
				}
				over++
				v.Failed++
				if over <= 5 {
					v.Violations = append(v.Violations, fmt.Sprintf("%s: %d tokens in the second up to %s (bound %.1f)", class, sum, rel(in.start, c.At), bound))
				}
			}
		}
		if over > 5 {
			v.Violations = append(v.Violations, fmt.Sprintf("%s: %d calls in all ended a second over the bound", class, over))
		}
		if excused > 0 {
			v.Notes = append(v.Notes, fmt.Sprintf("%s: %d calls ended a second over the bound (worst %d tokens) while the recorder had stalled for up to %s in that second: not counted, the arrival times there are the recorder's, not the wire's",
				class, excused, worstExcused, longest.Round(time.Millisecond)))
		}
		v.Checked += len(cs)
		v.Notes = append(v.Notes, fmt.Sprintf("%s: %d calls, worst second %d tokens (%+.1f %% of the rate) at %s (rate %.0f, bound %.1f)",
			class, len(cs), worst, 100*(float64(worst)/rate-1), rel(in.start, worstAt), rate, bound))
	}
	return v
}

// stallSpill is how long after a stall of the recorder the calls that arrived during it may
// still be getting their time stamps: the stall watcher notes the end when it runs again,
// and the request handlers queued behind it run after it. A soak (seed 1, 03:34) counted a
// second that began 1–24 ms after a 65 ms stall had ended, whose first 0.1 s held 41 tokens
// where the others held 30.
const stallSpill = 25 * time.Millisecond

// stallIn returns the longest stall of at least minStall whose time stamps fall into
// (from, to] (the stall itself, or the stallSpill after it), or 0.
func stallIn(stalls []stall, from, to time.Time) time.Duration {
	longest := time.Duration(0)
	for _, s := range stalls {
		if d := s.To.Sub(s.From); d >= minStall && s.To.Add(stallSpill).After(from) && !s.From.After(to) {
			longest = max(longest, d)
		}
	}
	return longest
}

func checkJobsLeft(in checkInput) invariant {
	v := invariant{Name: "nothing left in PUSH_JOBS", Checked: 1}
	if in.jobsLeft > 0 {
		v.fail("%d messages left in PUSH_JOBS", in.jobsLeft)
	}
	return v
}

// checkDLQ: a DLQ entry only for a job whose result says failed or rejected, one per job,
// and every such job has one (contract §5).
func checkDLQ(in checkInput) invariant {
	v := invariant{Name: "DLQ entries only (and always) for jobs whose result is failed or rejected"}
	results := map[key]string{}
	for _, r := range in.results {
		results[key{r.RequestID, r.JobSeq}] = r.Status
	}
	entries := map[key]int{}
	for _, e := range in.dlq {
		k := key{e.RequestID, e.JobSeq}
		entries[k]++
		v.Checked++
		st, ok := results[k]
		switch {
		case !ok:
			v.fail("DLQ entry of %s job_seq %d (%s) without a result", e.RequestID, e.JobSeq, e.Status)
		case st != "failed" && st != "rejected":
			v.fail("DLQ entry of %s job_seq %d, whose result is %s", e.RequestID, e.JobSeq, st)
		case st != e.Status:
			v.fail("DLQ entry of %s job_seq %d says %s, its result %s", e.RequestID, e.JobSeq, e.Status, st)
		}
		if entries[k] == 2 {
			v.fail("%s job_seq %d has more than one DLQ entry", e.RequestID, e.JobSeq)
		}
	}
	for k, st := range results {
		if (st == "failed" || st == "rejected") && entries[k] == 0 {
			v.fail("%s job_seq %d is %s but has no DLQ entry", k.id, k.seq, st)
		}
	}
	return v
}

func checkSIGTERM(in checkInput) invariant {
	v := invariant{Name: "every SIGTERM of a worker ends with exit 0 within PUSH_SHUTDOWN_TIMEOUT"}
	for _, e := range in.events {
		if e.Kind != faultWorkerTerm {
			continue
		}
		v.Checked++
		if e.Code != 0 || !e.InTime {
			v.fail("worker-%d at %s: %s", e.Slot, rel(in.start, e.At), e.What)
		}
	}
	return v
}

func sortedJobs(m map[string]*pubJob) []*pubJob {
	out := make([]*pubJob, 0, len(m))
	for _, j := range m {
		out = append(out, j)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// rel formats t as seconds since the start of the load.
func rel(start, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("+%.3fs", t.Sub(start).Seconds())
}

// violations counts the violations of every invariant.
func violations(vs []invariant) int {
	n := 0
	for _, v := range vs {
		n += v.Failed
	}
	return n
}

// printInvariants writes one line per invariant, its violations (a few) and its notes.
func printInvariants(b *strings.Builder, vs []invariant, notes bool) {
	for _, v := range vs {
		mark := "ok  "
		if v.Failed > 0 {
			mark = "FAIL"
		}
		fmt.Fprintf(b, "  %s %-86s checked %7d  violations %d\n", mark, v.Name, v.Checked, v.Failed)
		for _, s := range v.Violations {
			fmt.Fprintf(b, "         ✗ %s\n", s)
		}
		if n := v.Failed - len(v.Violations); n > 0 && v.Name != rateName {
			fmt.Fprintf(b, "         … %d more\n", n)
		}
		if notes {
			for _, s := range v.Notes {
				fmt.Fprintf(b, "         · %s\n", s)
			}
		}
	}
}
