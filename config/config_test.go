package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBadValuesNameTheVariable(t *testing.T) {
	cases := map[string]string{
		"PUSH_HTTP_TIMEOUT":          "ten",
		"PUSH_RATE_P2P":              "-1",
		"PUSH_MAX_ATTEMPTS":          "0",
		"PUSH_LOG_FORMAT":            "xml",
		"PUSH_APPS_FILE":             "/nonexistent/apps.json",
		"PUSH_NOTIFY_STATS_INTERVAL": "-1s",
		"PUSH_MIMC_URL":              "ftp://x",
		"PUSH_SUBJECT_PREFIX":        "a.*",
		"PUSH_MANAGE_STREAMS":        "maybe",
		"PUSH_DUPLICATE_WINDOW":      "50ms", // NATS refuses a window or max age under 100ms
		"PUSH_RESULTS_MAX_AGE":       "10ms",
		"PUSH_DLQ_MAX_AGE":           "99ms",
		"PUSH_UI":                    "sometimes",
		"PUSH_UI_ADMIN_TOKEN":        "short",
		"PUSH_EMBEDDED_SYNC":         "sometimes",
	}
	for v, val := range cases {
		t.Run(v, func(t *testing.T) {
			t.Setenv(v, val)
			_, err := Load()
			var ce *Error
			if err == nil || !errors.As(err, &ce) || ce.Var != v || !strings.Contains(err.Error(), v) {
				t.Fatalf("%s=%s: error %v, want one naming %s", v, val, err, v)
			}
		})
	}
}

func TestAppsFileAndSecrets(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "apps.json")
	apps := `{"apps":{"shop":{"mimc":{"app_id":"123","app_key":"k-shop-secret","app_secret":"s-shop-secret"},
		"notify":{"app_id":"n1","access_token":"tok-shop-secret","group_id":"g"},"rates":{"p2p":500}}}}`
	if err := os.WriteFile(f, []byte(apps), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PUSH_APPS_FILE", f)
	t.Setenv("PUSH_MIMC_APP_ID", "2882303761517")
	t.Setenv("PUSH_MIMC_APP_KEY", "default-key-secret")
	t.Setenv("PUSH_MIMC_APP_SECRET", "default-secret-secret")
	t.Setenv("PUSH_RATE_UCS", "20")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	shop := c.Apps["shop"]
	if shop.MIMC.AppID != "123" || shop.MIMC.AppKey.Reveal() != "k-shop-secret" || shop.Notify.GroupID != "g" {
		t.Fatalf("shop = %+v", shop)
	}
	if shop.Rate("p2p") != 500 || shop.Rate("ucs") != 20 || shop.Rate("notify") != 100 || c.Apps["default"].Rate("p2t") != 1000 {
		t.Fatalf("rates: shop %v default %v", shop.Rates, c.Apps["default"].Rates)
	}
	b, _ := json.Marshal(c)
	for _, s := range []string{"k-shop-secret", "s-shop-secret", "tok-shop-secret", "default-key-secret", "default-secret-secret"} {
		if strings.Contains(string(b), s) || strings.Contains(shop.MIMC.AppKey.String(), s) {
			t.Fatalf("secret %s printed", s)
		}
	}
	if len(c.Secrets()) != 5 {
		t.Fatalf("secrets = %d", len(c.Secrets()))
	}
	if err := os.WriteFile(f, []byte(`{"apps":{"x":{"notify":{"acess_token":"t"}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), "PUSH_APPS_FILE") {
		t.Fatalf("misspelt field accepted: %v", err)
	}
}

// TestOnlyPrefixedNamesCount: the bare names (NATS_URL is the nats CLI's own variable,
// SANDBOX would turn sandbox mode on) are never read; only PUSH_* are.
func TestOnlyPrefixedNamesCount(t *testing.T) {
	bare := map[string]string{
		"NATS_URL": "nats://elsewhere:4222", "SANDBOX": "true", "ADMIN_ADDR": "0.0.0.0:1",
		"LOG_LEVEL": "loud", "RATE_P2P": "-1", "MIMC_APP_ID": "x", "HTTP_TIMEOUT": "ten",
	}
	for k, v := range bare {
		t.Setenv(k, v)
	}
	c, err := Load()
	if err != nil {
		t.Fatalf("bare names were read: %v", err)
	}
	if c.NATSURL != "" || c.Sandbox || c.AdminAddr != "127.0.0.1:8080" || c.LogLevel != "info" || c.RateP2P != 1000 {
		t.Fatalf("bare names were read: %+v", c)
	}
	t.Setenv("PUSH_NATS_URL", "nats://here:4222")
	t.Setenv("PUSH_SANDBOX", "true")
	if c, err = Load(); err != nil || c.NATSURL != "nats://here:4222" || !c.Sandbox {
		t.Fatalf("PUSH_ names: %v %+v", err, c)
	}
}

// TestIncompleteMIMCCredentials: MIMC credentials are an app id, a key and a secret; a part
// of them stops the start naming what is missing, instead of calls with an empty key.
func TestIncompleteMIMCCredentials(t *testing.T) {
	cases := []struct {
		vars    map[string]string
		wantVar string
		want    []string
	}{
		{map[string]string{"PUSH_MIMC_APP_ID": "2882303761517"}, "PUSH_MIMC_APP_KEY", []string{"PUSH_MIMC_APP_KEY", "PUSH_MIMC_APP_SECRET"}},
		{map[string]string{"PUSH_MIMC_APP_ID": "2882303761517", "PUSH_MIMC_APP_KEY": "k"}, "PUSH_MIMC_APP_SECRET", []string{"PUSH_MIMC_APP_SECRET"}},
		{map[string]string{"PUSH_MIMC_APP_ID": "2882303761517", "PUSH_MIMC_APP_SECRET": "s"}, "PUSH_MIMC_APP_KEY", []string{"PUSH_MIMC_APP_KEY"}},
		{map[string]string{"PUSH_MIMC_APP_KEY": "k", "PUSH_MIMC_APP_SECRET": "s"}, "PUSH_MIMC_APP_ID", []string{"PUSH_MIMC_APP_ID"}},
		{map[string]string{"PUSH_MIMC_APP_ID": "x1", "PUSH_MIMC_APP_SECRET": "s"}, "PUSH_MIMC_APP_ID", []string{"decimal"}},
	}
	for _, tc := range cases {
		t.Run(tc.wantVar+"/"+strings.Join(tc.want, ","), func(t *testing.T) {
			for k, v := range tc.vars {
				t.Setenv(k, v)
			}
			_, err := Load()
			var ce *Error
			if !errors.As(err, &ce) || ce.Var != tc.wantVar {
				t.Fatalf("%v: error %v, want one for %s", tc.vars, err, tc.wantVar)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("%v: error %q does not name %s", tc.vars, err, w)
				}
			}
		})
	}

	f := filepath.Join(t.TempDir(), "apps.json")
	for field, mimc := range map[string]string{
		"app_key":    `{"app_id":"1","app_secret":"s"}`,
		"app_secret": `{"app_id":"1","app_key":"k"}`,
		"app_id":     `{"app_key":"k","app_secret":"s"}`,
	} {
		for _, app := range []string{"shop", "default"} {
			if err := os.WriteFile(f, []byte(`{"apps":{"`+app+`":{"mimc":`+mimc+`}}}`), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PUSH_APPS_FILE", f)
			_, err := Load()
			var ce *Error
			if !errors.As(err, &ce) || ce.Var != "PUSH_APPS_FILE" || !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), `"`+app+`"`) {
				t.Fatalf("apps file app %s without %s: error %v, want one naming PUSH_APPS_FILE, the app and %s", app, field, err, field)
			}
		}
	}
}

// TestNATSFilesMustBeReadable: a credentials, CA, certificate or key file that cannot be
// read stops the start naming its variable.
func TestNATSFilesMustBeReadable(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pem")
	if err := os.WriteFile(good, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"PUSH_NATS_CREDS", "PUSH_NATS_TLS_CA", "PUSH_NATS_TLS_CERT", "PUSH_NATS_TLS_KEY"} {
		for _, bad := range []string{filepath.Join(dir, "missing.pem"), dir} {
			t.Run(v+"="+bad, func(t *testing.T) {
				t.Setenv("PUSH_NATS_TLS_CERT", good)
				t.Setenv("PUSH_NATS_TLS_KEY", good)
				t.Setenv(v, bad)
				_, err := Load()
				var ce *Error
				if !errors.As(err, &ce) || ce.Var != v {
					t.Fatalf("%s=%s: error %v, want one naming %s", v, bad, err, v)
				}
			})
		}
	}
	t.Setenv("PUSH_NATS_CREDS", good)
	t.Setenv("PUSH_NATS_TLS_CA", good)
	t.Setenv("PUSH_NATS_TLS_CERT", good)
	t.Setenv("PUSH_NATS_TLS_KEY", good)
	if _, err := Load(); err != nil {
		t.Fatalf("readable files: %v", err)
	}
}

// TestRatesMustBeFinite: an infinite rate is no rate (NaN and negatives are refused too).
func TestRatesMustBeFinite(t *testing.T) {
	for _, v := range []string{"PUSH_RATE_P2P", "PUSH_RATE_P2T", "PUSH_RATE_UCS", "PUSH_RATE_NOTIFY"} {
		for _, val := range []string{"Inf", "+Inf", "-Inf", "infinity", "NaN", "0"} {
			t.Run(v+"="+val, func(t *testing.T) {
				t.Setenv(v, val)
				_, err := Load()
				var ce *Error
				if !errors.As(err, &ce) || ce.Var != v {
					t.Fatalf("%s=%s: error %v, want one naming %s", v, val, err, v)
				}
			})
		}
	}
	f := filepath.Join(t.TempDir(), "apps.json")
	for _, r := range []string{"1e400", "0", "-5"} {
		if err := os.WriteFile(f, []byte(`{"apps":{"shop":{"rates":{"p2p":`+r+`}}}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PUSH_APPS_FILE", f)
		_, err := Load()
		var ce *Error
		if !errors.As(err, &ce) || ce.Var != "PUSH_APPS_FILE" {
			t.Fatalf("apps file rate %s: error %v, want one naming PUSH_APPS_FILE", r, err)
		}
	}
}

func TestEmbeddedSyncPolicy(t *testing.T) {
	cases := []struct {
		value    string
		always   bool
		interval time.Duration
		bad      bool
	}{
		{"", false, 0, false},
		{"always", true, 0, false},
		{"Always", true, 0, false},
		{"30s", false, 30 * time.Second, false},
		{"0s", false, 0, true},
		{"-1s", false, 0, true},
		{"never", false, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.value, func(t *testing.T) {
			t.Setenv("PUSH_EMBEDDED_SYNC", tc.value)
			c, err := Load()
			if tc.bad {
				var ce *Error
				if !errors.As(err, &ce) || ce.Var != "PUSH_EMBEDDED_SYNC" {
					t.Fatalf("PUSH_EMBEDDED_SYNC=%q: error %v, want one naming PUSH_EMBEDDED_SYNC", tc.value, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if always, interval := c.EmbeddedSyncPolicy(); always != tc.always || interval != tc.interval {
				t.Fatalf("PUSH_EMBEDDED_SYNC=%q: always %v interval %s, want %v %s", tc.value, always, interval, tc.always, tc.interval)
			}
		})
	}
}
