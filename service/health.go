package service

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/upstream"
	"github.com/pushworker/pushworker/worker"
)

// health answers /healthz and /readyz from state refreshed in the background, so both
// answer at once.
type health struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	c        config.Config
	breakers *upstream.Breakers
	worker   *worker.Worker

	mu            sync.Mutex
	streamProblem string
}

func (h *health) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		h.checkStreams(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *health) checkStreams(ctx context.Context) {
	n := broker.NamesFrom(h.c)
	problem := ""
	for _, s := range []string{n.JobsStream(), n.ResultsStream(), n.DLQStream()} {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := h.js.Stream(cctx, s)
		cancel()
		if err != nil {
			problem = fmt.Sprintf("stream %s: %v", s, err)
			break
		}
	}
	h.mu.Lock()
	h.streamProblem = problem
	h.mu.Unlock()
}

func (h *health) healthz(w http.ResponseWriter, _ *http.Request) {
	if !h.worker.Healthy(h.nc.IsConnected()) {
		http.Error(w, "fetch loops are stuck", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (h *health) readyz(w http.ResponseWriter, _ *http.Request) {
	var problems []string
	if !h.worker.Consuming() {
		problems = append(problems, "not consuming jobs (starting or stopping)")
	}
	if st := h.nc.Status(); st != nats.CONNECTED {
		problems = append(problems, "NATS "+strings.ToLower(st.String()))
	}
	h.mu.Lock()
	if h.streamProblem != "" {
		problems = append(problems, h.streamProblem)
	}
	h.mu.Unlock()
	for _, g := range h.breakers.States() {
		if g.Paused {
			problems = append(problems, fmt.Sprintf("app %q %s upstream paused: %s", g.App, g.Upstream, g.Detail))
		}
	}
	if len(problems) > 0 {
		http.Error(w, "not ready: "+strings.Join(problems, "; "), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}
