package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushworker/pushworker/jobs"
)

// Every generated job decodes as its type under its request id, which is also what the
// upstream recorder reads back from the call; invalid ones are rejected.
func TestGenJob(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	kinds := map[jobKind]int{}
	types := map[jobs.Type]int{}
	for i := range 2000 {
		id, typ, kind, data := genJob(7, i, rng)
		kinds[kind]++
		types[typ]++
		d, err := jobs.Decode(jobs.Meta{Subject: "push.jobs." + string(typ), Seq: 1}, data, jobs.Options{SubjectPrefix: "push", MaxBytes: 1 << 20})
		if kind == kindInvalid {
			if err == nil {
				t.Fatalf("invalid job %d decoded: %s", i, data)
			}
			continue
		}
		if err != nil {
			t.Fatalf("job %d (%s) does not decode: %v\n%s", i, typ, err, data)
		}
		if d.RequestID != id {
			t.Fatalf("job %d: request id %q, want %q", i, d.RequestID, id)
		}
		for _, c := range d.Calls {
			got, weight := parseCall(classOfPath(d.Spec.Path), c.Body)
			if got != id || weight != c.Weight {
				t.Fatalf("job %d (%s): the recorder reads id %q weight %d, want %q %d", i, typ, got, weight, id, c.Weight)
			}
		}
	}
	if len(types) != len(jobTypes) || kinds[kindInvalid] == 0 || kinds[kindExpiring] == 0 {
		t.Fatalf("types %v kinds %v: want every type and kind", types, kinds)
	}
}

// The schedule is the same for a seed, differs between seeds, and brings every kind.
func TestSchedule(t *testing.T) {
	a, b := schedule(3, 10*time.Minute, 5*time.Second, 3, 3), schedule(3, 10*time.Minute, 5*time.Second, 3, 3)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("two schedules of one seed differ")
	}
	if fmt.Sprint(a) == fmt.Sprint(schedule(4, 10*time.Minute, 5*time.Second, 3, 3)) {
		t.Fatal("seeds 3 and 4 give the same schedule")
	}
	counts := map[faultKind]int{}
	for _, f := range a[:numFaultKinds] {
		counts[f.Kind]++
	}
	if len(counts) != int(numFaultKinds) {
		t.Fatalf("the first %d faults are not one of each kind: %v", numFaultKinds, counts)
	}
	if n := len(a); n < 100 || n > 140 {
		t.Fatalf("%d faults in 10 minutes at one per 5 s", n)
	}
}

// Each invariant catches what breaks it.
func TestChecks(t *testing.T) {
	t0 := time.Now()
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	base := func() checkInput {
		return checkInput{
			start: t0,
			jobs: map[string]*pubJob{
				"a": {ID: "a", Type: jobs.P2P, Seqs: []uint64{1, 5}},
				"b": {ID: "b", Type: jobs.P2P, Seqs: []uint64{2}, Kind: kindInvalid},
				"c": {ID: "c", Type: jobs.P2P, Seqs: []uint64{3}},
			},
			results: []resultRec{
				{RequestID: "a", JobSeq: 1, Status: "sent"},
				{RequestID: "a", JobSeq: 5, Status: "sent", Duplicate: true},
				{RequestID: "b", JobSeq: 2, Status: "rejected"},
				{RequestID: "c", JobSeq: 3, Status: "sent"},
			},
			dlq: []dlqRec{{RequestID: "b", JobSeq: 2, Status: "rejected"}},
			calls: []call{
				{Slot: 1, At: at(1), Answered: at(1.01), Class: "p2p", Weight: 1, RequestID: "a", Status: 200, Accepted: true},
				{Slot: 2, At: at(2), Answered: at(2.01), Class: "p2p", Weight: 1, RequestID: "c", Status: 200, Accepted: true},
			},
			rates:         map[string]float64{"p2p": 10},
			crashWindow:   10 * time.Second,
			rateTolerance: 0.01,
		}
	}
	if n := violations(check(base())); n != 0 {
		var b strings.Builder
		printInvariants(&b, check(base()), false)
		t.Fatalf("a clean run has %d violations:\n%s", n, b.String())
	}
	cases := []struct {
		name      string
		invariant int
		change    func(*checkInput)
	}{
		{"lost job", 0, func(in *checkInput) { in.results = in.results[1:] }},
		{"two results", 0, func(in *checkInput) { in.results = append(in.results, in.results[3]) }},
		{"unknown result", 0, func(in *checkInput) {
			in.results = append(in.results, resultRec{RequestID: "c", JobSeq: 9, Status: "sent"})
		}},
		{"invalid job sent", 0, func(in *checkInput) { in.results[2].Status = "sent"; in.dlq = nil }},
		{"two owners", 1, func(in *checkInput) { in.results[1].Duplicate = false }},
		{"duplicate of nothing", 1, func(in *checkInput) {
			in.results[3].Duplicate = true
		}},
		{"accepted twice", 2, func(in *checkInput) {
			in.calls = append(in.calls, call{Slot: 3, At: at(5), Answered: at(5.01), Class: "p2p", Weight: 1, RequestID: "c", Status: 200, Accepted: true})
		}},
		{"accepted twice, the kill long before the call", 2, func(in *checkInput) {
			in.calls = append(in.calls, call{Slot: 3, At: at(5), Answered: at(5.01), Class: "p2p", Weight: 1, RequestID: "c", Status: 200, Accepted: true})
			in.events = append(in.events, event{At: at(0.5), Kind: faultWorkerKill, Slot: 2})
		}},
		{"accepted twice, the kill of another worker", 2, func(in *checkInput) {
			in.calls = append(in.calls, call{Slot: 3, At: at(5), Answered: at(5.01), Class: "p2p", Weight: 1, RequestID: "c", Status: 200, Accepted: true})
			in.events = append(in.events, event{At: at(2.02), Kind: faultWorkerKill, Slot: 1})
		}},
		{"over the rate", 3, func(in *checkInput) {
			for i := range 13 {
				in.calls = append(in.calls, call{Slot: 1, At: at(3 + float64(i)/20), Class: "p2p", Weight: 1, RequestID: "c"})
			}
		}},
		{"jobs left", 4, func(in *checkInput) { in.jobsLeft = 3 }},
		{"DLQ entry of a sent job", 5, func(in *checkInput) { in.dlq = append(in.dlq, dlqRec{RequestID: "c", JobSeq: 3, Status: "failed"}) }},
		{"rejected job without DLQ entry", 5, func(in *checkInput) { in.dlq = nil }},
		{"SIGTERM exit 1", 6, func(in *checkInput) {
			in.events = append(in.events, event{At: at(1), Kind: faultWorkerTerm, Slot: 1, Code: 1, InTime: true})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.change(&in)
			vs := check(in)
			if vs[tc.invariant].Failed == 0 || len(vs[tc.invariant].Violations) == 0 {
				var b strings.Builder
				printInvariants(&b, vs, true)
				t.Fatalf("%q not caught:\n%s", vs[tc.invariant].Name, b.String())
			}
		})
	}
	// A second acceptance after the kill -9 of the worker that made the first is the
	// crash window: listed, not a violation.
	in := base()
	in.calls = append(in.calls, call{Slot: 3, At: at(5), Answered: at(5.01), Class: "p2p", Weight: 1, RequestID: "c", Status: 200, Accepted: true})
	in.events = append(in.events, event{At: at(2.02), Kind: faultWorkerKill, Slot: 2})
	if v := check(in)[2]; v.Failed != 0 || !strings.Contains(strings.Join(v.Notes, "\n"), "worker-2 kill -9") {
		t.Fatalf("crash window not matched: %+v", v)
	}
	// A second over the bound in which the recorder stalled is noted, not counted; a stall
	// outside that second excuses nothing.
	over := func(stalls ...stall) invariant {
		in := base()
		in.stalls = stalls
		for i := range 13 {
			in.calls = append(in.calls, call{Slot: 1, At: at(3 + float64(i)/20), Class: "p2p", Weight: 1, RequestID: "c"})
		}
		return check(in)[3]
	}
	if v := over(stall{From: at(3.1), To: at(3.2)}); v.Failed != 0 || !strings.Contains(strings.Join(v.Notes, "\n"), "stalled") {
		t.Fatalf("a stall of the recorder did not excuse the second: %+v", v)
	}
	// The calls that arrived during a stall get their stamps right after it: a second that
	// begins within stallSpill of a stall's end is excused too, one that begins later is not.
	if v := over(stall{From: at(2.5), To: at(2.59)}); v.Failed != 0 {
		t.Fatalf("a second beginning 10 ms after a stall was counted: %+v", v)
	}
	if v := over(stall{From: at(1), To: at(1.1)}, stall{From: at(3.1), To: at(3.11)}); v.Failed == 0 {
		t.Fatalf("a stall outside the second, or a short one, excused it: %+v", v)
	}
}

// TestSoak runs the chaos soak for 45 s (seed 1) with the built binaries: every invariant
// must hold. It takes about two minutes, building included. The rate is checked against
// the contract's bound (rate + 5 %) here, not the README's 1 %: on a shared 2-core machine
// a busy neighbour delays the recorder's time stamps by tens of milliseconds, enough to
// push a 50/s class one token over 1 % (the 10-minute runs in the README check 1 %).
func TestSoak(t *testing.T) {
	dir := t.TempDir()
	for _, b := range []struct{ out, pkg string }{{"pushchaos", "."}, {"pushworker", "../pushworker"}} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "pushchaos"), "--duration", "45s", "--seed", "1",
		"--worker-bin", filepath.Join(dir, "pushworker"), "--dir", filepath.Join(dir, "soak"), "--settle", "3m",
		"--rate-tolerance", "0.05")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("pushchaos:\n%s", stdout.String())
	if err != nil {
		t.Logf("progress:\n%s", tail(stderr.String(), 4000))
		for _, name := range []string{"worker-1.log", "n1.log"} {
			if b, rerr := os.ReadFile(filepath.Join(dir, "soak", name)); rerr == nil {
				t.Logf("%s (tail):\n%s", name, tail(string(b), 3000))
			}
		}
		t.Fatalf("pushchaos: %v", err)
	}
	if !strings.Contains(stdout.String(), "every invariant held") {
		t.Fatal("pushchaos exited 0 without saying every invariant held")
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// The processes the soak starts run at --child-nice, as the program itself (nice execs it
// in its place), so that signals and exit statuses are the program's.
func TestChildrenRunNiced(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep program")
	}
	p, err := startProc("sleeper", sleep, []string{"30"}, os.Environ(), filepath.Join(t.TempDir(), "sleeper.log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.kill()
	pid := p.cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d is %q, not sleep, after 5 s (%v)", pid, comm, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command's closing parenthesis: state is field 3, nice field 19.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 17 || fields[16] != fmt.Sprint(childNice) {
		t.Fatalf("the child's nice is not %d: /proc/%d/stat %s", childNice, pid, stat)
	}
	if code, inTime := p.term(5 * time.Second); !inTime || code != -1 {
		t.Fatalf("SIGTERM: exit code %d, in time %v; want the program ended by the signal", code, inTime)
	}
}
