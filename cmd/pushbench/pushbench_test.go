package main

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pushworker/pushworker/jobs"
)

// Every generated job is jobSize bytes and a valid job of its type.
func TestJobGen(t *testing.T) {
	g := jobGen{run: "t", types: []jobs.Type{jobs.P2P, jobs.P2T, jobs.UCS}}
	for _, i := range []int{0, 1, 2, 99999, 1234567} {
		subject, data := g.job(i)
		if len(data) != jobSize {
			t.Errorf("job %d is %d bytes, want %d: %s", i, len(data), jobSize, data)
		}
		d, err := jobs.Decode(jobs.Meta{Subject: subject, Seq: 1}, data, jobs.Options{SubjectPrefix: "push", MaxBytes: 1 << 20})
		if err != nil {
			t.Fatalf("job %d (%s) does not decode: %v\n%s", i, subject, err, data)
		}
		if want := "t-" + strconv.Itoa(i); d.RequestID != want {
			t.Errorf("job %d has request id %q, want %q", i, d.RequestID, want)
		}
		if d.Type != string(g.typeOf(i)) {
			t.Errorf("job %d has type %q, want %q", i, d.Type, g.typeOf(i))
		}
	}
}

// The results collector counts each job once and notices the end of a phase.
func TestResults(t *testing.T) {
	r := newResults()
	r.expect("run", 3, false)
	for _, id := range []string{"run-0", "run-1", "other-1", "run-1", "run-9", "run-2"} {
		r.handle(resultMsg(id, "sent"))
	}
	select {
	case <-r.done:
	default:
		t.Fatal("phase not done after every result")
	}
	s := r.snapshot()
	if r.received() != 3 || s.dups != 1 || r.other != 2 || s.status["sent"] != 3 {
		t.Errorf("received %d dups %d other %d status %v", r.received(), s.dups, r.other, s.status)
	}
}

func TestReadProcStat(t *testing.T) {
	deadline := time.Now().Add(30 * time.Millisecond)
	for time.Now().Before(deadline) { // burn some CPU
	}
	st, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.RSS == 0 || st.HWM < st.RSS || st.CPU <= 0 {
		t.Errorf("implausible /proc reading: %+v", st)
	}
}

func resultMsg(id, status string) *nats.Msg {
	m := nats.NewMsg("push.results.p2p")
	m.Header.Set(jobs.HeaderRequestID, id)
	m.Header.Set(jobs.HeaderStatus, status)
	m.Data = []byte(`{}`)
	return m
}
