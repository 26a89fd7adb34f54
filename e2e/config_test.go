package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runOnce runs the binary with args and vars until it exits or d passes.
func runOnce(t *testing.T, d time.Duration, vars map[string]string, args ...string) (out string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, workerBin, args...)
	cmd.Env = childEnv(vars)
	cmd.Dir = t.TempDir()
	b, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("pushworker %v did not exit within %v; output:\n%s", args, d, tail(string(b), 4000))
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running pushworker: %v", err)
	}
	return string(b), cmd.ProcessState.ExitCode()
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, code := runOnce(t, 20*time.Second, nil, "--version")
	if code != 0 {
		t.Fatalf("--version exited %d: %s", code, out)
	}
	// One line that names a version: "pushworker <version>".
	if !regexp.MustCompile(`^pushworker \S[^\n]*\n?$`).MatchString(out) {
		t.Fatalf("--version printed %q, want one line \"pushworker <version>\"", out)
	}
}

// TestBadConfigStopsWithTheVariable: a bad value stops the worker at start with a message
// naming the variable (§7). The worker is pointed at a NATS URL where nothing listens, so a
// configuration error that went unnoticed fails with a connection error instead.
func TestBadConfigStopsWithTheVariable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badJSON := filepath.Join(dir, "apps-bad.json")
	if err := os.WriteFile(badJSON, []byte(`{"apps": {"shop": {"mimc": `), 0o600); err != nil {
		t.Fatal(err)
	}
	badRate := filepath.Join(dir, "apps-rate.json")
	if err := os.WriteFile(badRate, []byte(`{"apps": {"shop": {"rates": {"sms": 5}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, value string }{
		{"PUSH_HTTP_TIMEOUT", "ten"},
		{"PUSH_HTTP_TIMEOUT", "0s"},
		{"PUSH_RATE_P2P", "-1"},
		{"PUSH_RATE_NOTIFY", "fast"},
		{"PUSH_MAX_ATTEMPTS", "0"},
		{"PUSH_CONCURRENCY", "0"},
		{"PUSH_APPS_FILE", "/nonexistent/apps.json"},
		{"PUSH_APPS_FILE", badJSON},
		{"PUSH_APPS_FILE", badRate},
		{"PUSH_LOG_FORMAT", "xml"},
		{"PUSH_LOG_LEVEL", "loud"},
		{"PUSH_RETRY_INITIAL", "soon"},
		{"PUSH_DEDUP_TTL", "-1h"},
		{"PUSH_SHUTDOWN_TIMEOUT", "30"},
		{"PUSH_DUPLICATE_WINDOW", "2"},
		{"PUSH_RESULTS_MAX_AGE", "forever"},
		{"PUSH_NOTIFY_STATS_INTERVAL", "-1s"},
		{"PUSH_MAX_JOB_BYTES", "1MB"},
		{"PUSH_STREAM_REPLICAS", "0"},
		{"PUSH_MANAGE_STREAMS", "maybe"},
		{"PUSH_SANDBOX", "perhaps"},
		{"PUSH_MIMC_URL", "ftp://example.com"},
		{"PUSH_SUBJECT_PREFIX", "push.*"},
		{"PUSH_STREAM_PREFIX", "PUSH.X"},
		{"PUSH_MIMC_APP_ID", "not-a-number"},
		{"PUSH_MIMC_APP_ID", "2882303761517"}, // without key and secret
		{"PUSH_MIMC_APP_SECRET", "s"},         // without id and key
		{"PUSH_RATE_P2P", "Inf"},
		{"PUSH_RATE_UCS", "+Inf"},
		{"PUSH_NATS_CREDS", "/nonexistent/user.creds"},
		{"PUSH_NATS_TLS_CA", "/nonexistent/ca.pem"},
	}
	for _, c := range cases {
		t.Run(c.name+"="+c.value, func(t *testing.T) {
			vars := map[string]string{
				"PUSH_NATS_URL":   "nats://127.0.0.1:1",
				"PUSH_ADMIN_ADDR": "127.0.0.1:0",
				"PUSH_DATA_DIR":   t.TempDir(),
				c.name:            c.value,
			}
			out, code := runOnce(t, 20*time.Second, vars)
			if code == 0 {
				t.Fatalf("exit code 0 with %s=%q; output:\n%s", c.name, c.value, out)
			}
			if !strings.Contains(out, c.name) {
				t.Fatalf("exit code %d with %s=%q, but the message does not name %s:\n%s", code, c.name, c.value, c.name, out)
			}
		})
	}
}

// TestPositionalArgumentsAreRefused: pushworker takes flags only (§1); an argument is a
// usage error (exit 2, as an unknown flag), not a worker that starts anyway.
func TestPositionalArgumentsAreRefused(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"PUSH_NATS_URL": "nats://127.0.0.1:1", "PUSH_ADMIN_ADDR": "127.0.0.1:0", "PUSH_DATA_DIR": t.TempDir()}
	for _, args := range [][]string{{"extra-arg"}, {"--sandbox", "run"}, {"--version", "x"}} {
		out, code := runOnce(t, 20*time.Second, vars, args...)
		if code != 2 || !strings.Contains(out, args[len(args)-1]) {
			t.Fatalf("pushworker %v: exit code %d, want 2 and a message naming %q; output:\n%s", args, code, args[len(args)-1], out)
		}
	}
}

// TestFatalErrorAlwaysPrinted: a failure to start reaches stderr once, also when
// PUSH_LOG_LEVEL hides error log lines.
func TestFatalErrorAlwaysPrinted(t *testing.T) {
	t.Parallel()
	for _, level := range []string{"info", "error", "fatal", "disabled"} {
		vars := map[string]string{
			"PUSH_NATS_URL": "nats://127.0.0.1:1", "PUSH_ADMIN_ADDR": "127.0.0.1:0", "PUSH_DATA_DIR": t.TempDir(),
			"PUSH_LOG_LEVEL": level,
		}
		out, code := runOnce(t, 20*time.Second, vars)
		if code != 1 || strings.Count(out, "connecting to NATS at nats://127.0.0.1:1") != 1 {
			t.Fatalf("PUSH_LOG_LEVEL=%s: exit code %d, want 1 and the error printed once; output:\n%s", level, code, out)
		}
	}
}
