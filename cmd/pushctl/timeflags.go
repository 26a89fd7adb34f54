package main

import (
	"fmt"
	"strings"
	"time"
)

// parseSince reads a --since value: a duration back from now ("90m") or an RFC 3339 time.
// Empty means the beginning of the stream (zero time).
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			d = -d
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration back from now (10m, 24h) or an RFC 3339 time", s)
}

// parseNotAfter reads a --not-after value: an RFC 3339 time or a duration from now.
func parseNotAfter(s string, now time.Time) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return &t, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "+")); err == nil && d > 0 {
		t := now.Add(d).UTC().Truncate(time.Millisecond)
		return &t, nil
	}
	return nil, fmt.Errorf("--not-after %q: want an RFC 3339 time or a positive duration from now (10m)", s)
}

// fmtTime formats a time for the one-line outputs.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// waitFlag is --wait with an optional timeout: "--wait", "--wait=10s" (and, handled by
// send, "--wait 10s").
type waitFlag struct {
	on   bool
	bare bool // given without a value
	d    time.Duration
}

const defaultWait = 30 * time.Second

func (w *waitFlag) IsBoolFlag() bool { return true }

func (w *waitFlag) String() string {
	if w == nil || !w.on {
		return ""
	}
	return w.d.String()
}

func (w *waitFlag) Set(s string) error {
	switch s {
	case "true":
		w.on, w.bare, w.d = true, true, defaultWait
		return nil
	case "false":
		w.on = false
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("want a positive duration like 30s")
	}
	w.on, w.bare, w.d = true, false, d
	return nil
}

// parseNotBefore reads --at (an RFC 3339 time) or --in (a duration from now).
func parseNotBefore(at, in string, now time.Time) (*time.Time, error) {
	switch {
	case at != "" && in != "":
		return nil, fmt.Errorf("--at and --in: give one of them")
	case at != "":
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return nil, fmt.Errorf("--at %q: want an RFC 3339 time (2026-11-23T09:00:00+08:00)", at)
		}
		return &t, nil
	case in != "":
		d, err := time.ParseDuration(in)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("--in %q: want a positive duration (90m)", in)
		}
		t := now.Add(d).UTC()
		return &t, nil
	}
	return nil, nil
}
