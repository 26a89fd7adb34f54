package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/pushworker/pushworker/control"
	"github.com/pushworker/pushworker/jobs"
)

// controlCalls are the operator's endpoints (README "Campaigns"): they write the controls
// bucket, as pushctl pause|resume|cancel do, and make no upstream call.
var controlCalls = []call{
	{name: "pause", subject: "pause", fields: []string{"target", "app", "for", "reason"}},
	{name: "resume", subject: "resume", fields: []string{"target", "app"}},
	{name: "cancel", subject: "cancel", fields: []string{"request_id_prefix", "for"}},
}

// controlRequest is the request of the operator's endpoints.
type controlRequest struct {
	Target          string `json:"target"`
	App             string `json:"app"`
	For             string `json:"for"` // Go duration
	Reason          string `json:"reason"`
	RequestIDPrefix string `json:"request_id_prefix"`
}

func (s *apiService) addControlEndpoints(g micro.Group, store control.Store) error {
	for i := range controlCalls {
		c := &controlCalls[i]
		h := micro.HandlerFunc(func(req micro.Request) {
			start := time.Now()
			if !s.enter() {
				s.respond(req, c, "", start, fail(CodeUnavailable, jobs.KindUpstreamUnavailable, "pushworker is stopping; retry on another replica"))
				return
			}
			defer s.leave()
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			defer cancel()
			s.respond(req, c, "", start, serveControl(ctx, store, c.name, req.Data()))
		})
		md := map[string]string{"call": "operator " + c.name, "fields": strings.Join(c.fields, ",")}
		if err := g.AddEndpoint(c.name, h, micro.WithEndpointSubject(c.subject), micro.WithEndpointMetadata(md)); err != nil {
			return fmt.Errorf("api: adding endpoint %s: %w", c.subject, err)
		}
	}
	return nil
}

func serveControl(ctx context.Context, store control.Store, name string, data []byte) answer {
	var r controlRequest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return fail(CodeInvalid, jobs.KindInvalidJob, "request must be a JSON object with %s: %v", strings.Join(fieldsOf(name), ", "), err)
	}
	var forD time.Duration
	if r.For != "" {
		d, err := time.ParseDuration(r.For)
		if err != nil || d <= 0 {
			return fail(CodeInvalid, jobs.KindInvalidJob, "for must be a positive Go duration (e.g. 30m), got %q", r.For)
		}
		forD = d
	}
	now := time.Now().UTC()
	var out any
	switch name {
	case "pause", "resume":
		if r.RequestIDPrefix != "" {
			return fail(CodeInvalid, jobs.KindInvalidJob, "request_id_prefix is a field of cancel, not of %s", name)
		}
		if err := control.CheckTarget(r.Target); err != nil {
			return fail(CodeInvalid, jobs.KindInvalidJob, "%v", err)
		}
		if name == "resume" {
			found, err := store.Resume(ctx, r.App, r.Target)
			if err != nil {
				return fail(CodeUnavailable, jobs.KindUpstreamUnavailable, "controls bucket: %v", err)
			}
			out = map[string]any{"target": r.Target, "app": r.App, "resumed": found}
			break
		}
		p := control.Pause{Target: r.Target, App: r.App, Since: now, Reason: r.Reason}
		if forD > 0 {
			p.Until = now.Add(forD)
		}
		if err := store.Pause(ctx, p); err != nil {
			return fail(CodeUnavailable, jobs.KindUpstreamUnavailable, "controls bucket: %v", err)
		}
		out = p
	case "cancel":
		if r.RequestIDPrefix == "" {
			return fail(CodeInvalid, jobs.KindInvalidJob, "request_id_prefix is required")
		}
		if forD == 0 {
			forD = control.DefaultCancelFor
		}
		c := control.Cancel{Prefix: r.RequestIDPrefix, Since: now, Until: now.Add(forD)}
		if err := store.Cancel(ctx, c); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fail(CodeUnavailable, jobs.KindUpstreamUnavailable, "controls bucket: %v", err)
			}
			return fail(CodeInvalid, jobs.KindInvalidJob, "%v", err)
		}
		out = c
	}
	b, _ := json.Marshal(out)
	return answer{data: b}
}

func fieldsOf(name string) []string {
	for _, c := range controlCalls {
		if c.name == name {
			return c.fields
		}
	}
	return nil
}
