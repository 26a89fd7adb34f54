package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/internal/natstest"
	"github.com/pushworker/pushworker/jobs"
)

// harness is an embedded NATS server with JetStream, optionally with pushworker's streams.
type harness struct {
	t     *testing.T
	url   string
	nc    *nats.Conn
	js    jetstream.JetStream
	names broker.Names
	cfg   config.Config
}

func newHarness(t *testing.T, withStreams bool) *harness {
	t.Helper()
	s := natstest.Start(t, natstest.JetStream(t, ""))
	nc, js := natstest.Connect(t, s)
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, url: s.ClientURL(), nc: nc, js: js, names: broker.NamesFrom(cfg), cfg: cfg}
	if withStreams {
		if err := broker.EnsureStreams(h.ctx(), js, cfg); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	h.t.Cleanup(cancel)
	return ctx
}

// syncBuffer is a bytes.Buffer safe for a command writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pushctl runs the CLI in-process against the harness server.
func (h *harness) pushctl(args ...string) (code int, stdout, stderr string) {
	return h.pushctlCtx(context.Background(), args...)
}

func (h *harness) pushctlCtx(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	h.t.Helper()
	var out, errb syncBuffer
	code = run(ctx, append([]string{"--server", h.url}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// mustPushctl runs the CLI and fails the test unless it exits with want.
func (h *harness) mustPushctl(want int, args ...string) (stdout, stderr string) {
	h.t.Helper()
	code, out, errs := h.pushctl(args...)
	if code != want {
		h.t.Fatalf("pushctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errs)
	}
	return out, errs
}

func (h *harness) stream(name string) jetstream.Stream {
	h.t.Helper()
	st, err := h.js.Stream(h.ctx(), name)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func (h *harness) msgCount(stream string) uint64 {
	h.t.Helper()
	return h.stream(stream).CachedInfo().State.Msgs
}

// lastJob returns the last job message stored on a subject.
func (h *harness) lastJob(subject string) *jetstream.RawStreamMsg {
	h.t.Helper()
	m, err := h.stream(h.names.JobsStream()).GetLastMsgForSubject(h.ctx(), subject)
	if err != nil {
		h.t.Fatalf("no job on %s: %v", subject, err)
	}
	return m
}

// publishResult publishes a result as the worker does.
func (h *harness) publishResult(subject string, r jobs.Result) {
	h.t.Helper()
	data, err := json.Marshal(r)
	if err != nil {
		h.t.Fatal(err)
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jobs.HeaderRequestID, r.RequestID)
	m.Header.Set(jobs.HeaderStatus, string(r.Status))
	if _, err := h.js.PublishMsg(h.ctx(), m); err != nil {
		h.t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
