package main

import (
	"context"
	"fmt"
	"time"

	"github.com/pushworker/pushworker/control"
)

// runPause pauses a job type or rate class, for every app or one (README "Campaigns").
func runPause(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("pause", "<type|class> [--app A] [--for D] [--reason R]")
	appName := fs.String("app", "", "pause only this app's jobs (default: every app)")
	forD := fs.Duration("for", 0, "pause for this long, then resume by itself (default: until pushctl resume)")
	reason := fs.String("reason", "", "why, shown by pushctl status")
	pos, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return a.usageErr("pause takes one job type or rate class")
	}
	if *forD < 0 {
		return a.usageErr("--for must not be negative")
	}
	if err := control.CheckTarget(pos[0]); err != nil {
		return a.usageErr("pause: %v", err)
	}
	p := control.Pause{Target: pos[0], App: *appName, Reason: *reason, Since: time.Now().UTC()}
	if *forD > 0 {
		p.Until = p.Since.Add(*forD)
	}
	return a.withControls(ctx, func(ctx context.Context, s control.Store) error {
		if err := s.Pause(ctx, p); err != nil {
			return err
		}
		if a.g.json {
			writeJSONLine(a.stdout, p)
			return nil
		}
		fmt.Fprintf(a.stdout, "paused %s for %s until %s\n", p.Target, appLabel(p.App), untilLabel(p.Until))
		return nil
	})
}

// runResume ends a pause.
func runResume(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("resume", "<type|class> [--app A]")
	appName := fs.String("app", "", "the app the pause was for (default: the pause of every app)")
	pos, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return a.usageErr("resume takes one job type or rate class")
	}
	if err := control.CheckTarget(pos[0]); err != nil {
		return a.usageErr("resume: %v", err)
	}
	return a.withControls(ctx, func(ctx context.Context, s control.Store) error {
		found, err := s.Resume(ctx, *appName, pos[0])
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%s is not paused for %s", pos[0], appLabel(*appName))
		}
		fmt.Fprintf(a.stdout, "resumed %s for %s\n", pos[0], appLabel(*appName))
		return nil
	})
}

// runCancel cancels every job not yet sent whose request id starts with a prefix.
func runCancel(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("cancel", "--request-id-prefix P [--for D]")
	prefix := fs.String("request-id-prefix", "", "cancel the jobs whose request id starts with this (required)")
	forD := fs.Duration("for", control.DefaultCancelFor, "how long the cancellation holds for jobs still arriving")
	pos, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return a.usageErr("cancel takes no arguments (got %q)", pos[0])
	}
	if *prefix == "" {
		return a.usageErr("cancel: --request-id-prefix is required")
	}
	if *forD <= 0 {
		return a.usageErr("--for must be positive")
	}
	now := time.Now().UTC()
	c := control.Cancel{Prefix: *prefix, Since: now, Until: now.Add(*forD)}
	return a.withControls(ctx, func(ctx context.Context, s control.Store) error {
		if err := s.Cancel(ctx, c); err != nil {
			return err
		}
		if a.g.json {
			writeJSONLine(a.stdout, c)
			return nil
		}
		fmt.Fprintf(a.stdout, "cancelled jobs with request ids starting %q until %s\n", c.Prefix, untilLabel(c.Until))
		return nil
	})
}

func (a *app) withControls(ctx context.Context, f func(context.Context, control.Store) error) int {
	sess, err := a.connect()
	if err != nil {
		return a.fail(err)
	}
	defer sess.Close()
	actx, cancel := apiContext(ctx)
	defer cancel()
	s, err := control.Open(actx, sess.js, sess.names.ControlBucket())
	if err != nil {
		return a.fail(err)
	}
	if err := f(actx, s); err != nil {
		return a.fail(err)
	}
	return exitOK
}

func appLabel(app string) string {
	if app == "" {
		return "every app"
	}
	return "app " + app
}

func untilLabel(t time.Time) string {
	if t.IsZero() {
		return "resumed"
	}
	return t.Format(time.RFC3339)
}
