// Package config loads pushworker's configuration from the environment (contract §7) and the
// optional apps file, validates it once at start and hands it down as values.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Rate classes (contract §3).
const (
	ClassP2P    = "p2p"
	ClassP2T    = "p2t"
	ClassUCS    = "ucs"
	ClassNotify = "notify"
)

// Classes lists every rate class.
var Classes = []string{ClassP2P, ClassP2T, ClassUCS, ClassNotify}

// DefaultApp is the app a job uses when it names none.
const DefaultApp = "default"

// Config is the whole configuration of the worker.
type Config struct {
	NATSURL      string `envconfig:"PUSH_NATS_URL"`
	NATSCreds    string `envconfig:"PUSH_NATS_CREDS"`
	NATSNKey     string `envconfig:"PUSH_NATS_NKEY"`
	NATSUser     string `envconfig:"PUSH_NATS_USER"`
	NATSPassword Secret `envconfig:"PUSH_NATS_PASSWORD"`
	NATSToken    Secret `envconfig:"PUSH_NATS_TOKEN"`
	NATSTLSCA    string `envconfig:"PUSH_NATS_TLS_CA"`
	NATSTLSCert  string `envconfig:"PUSH_NATS_TLS_CERT"`
	NATSTLSKey   string `envconfig:"PUSH_NATS_TLS_KEY"`

	EmbeddedListen string `envconfig:"PUSH_EMBEDDED_LISTEN" default:"127.0.0.1:4222"`
	DataDir        string `envconfig:"PUSH_DATA_DIR" default:"./data"`
	// EmbeddedSync is how the embedded server's file store reaches the disk: empty for the
	// server's default (fsync every 2 minutes), "always" to fsync every write before it is
	// acknowledged, or a duration between fsyncs. See EmbeddedSyncPolicy.
	EmbeddedSync string `envconfig:"PUSH_EMBEDDED_SYNC"`

	MIMCURL       string `envconfig:"PUSH_MIMC_URL" default:"https://mimc.chat.xiaomi.net"`
	MIMCAppID     string `envconfig:"PUSH_MIMC_APP_ID"`
	MIMCAppKey    Secret `envconfig:"PUSH_MIMC_APP_KEY"`
	MIMCAppSecret Secret `envconfig:"PUSH_MIMC_APP_SECRET"`

	NotifyURL         string `envconfig:"PUSH_NOTIFY_URL"`
	NotifyAppID       string `envconfig:"PUSH_NOTIFY_APP_ID"`
	NotifyAccessToken Secret `envconfig:"PUSH_NOTIFY_ACCESS_TOKEN"`

	AppsFile string `envconfig:"PUSH_APPS_FILE"`

	RateP2P    float64 `envconfig:"PUSH_RATE_P2P" default:"1000"`
	RateP2T    float64 `envconfig:"PUSH_RATE_P2T" default:"1000"`
	RateUCS    float64 `envconfig:"PUSH_RATE_UCS" default:"1000"`
	RateNotify float64 `envconfig:"PUSH_RATE_NOTIFY" default:"100"`

	Concurrency  int           `envconfig:"PUSH_CONCURRENCY" default:"64"`
	HTTPTimeout  time.Duration `envconfig:"PUSH_HTTP_TIMEOUT" default:"10s"`
	MaxAttempts  int           `envconfig:"PUSH_MAX_ATTEMPTS" default:"8"`
	RetryInitial time.Duration `envconfig:"PUSH_RETRY_INITIAL" default:"1s"`
	RetryMax     time.Duration `envconfig:"PUSH_RETRY_MAX" default:"5m"`
	DedupTTL     time.Duration `envconfig:"PUSH_DEDUP_TTL" default:"24h"`

	AdminAddr string `envconfig:"PUSH_ADMIN_ADDR" default:"127.0.0.1:8080"`
	LogLevel  string `envconfig:"PUSH_LOG_LEVEL" default:"info"`
	LogFormat string `envconfig:"PUSH_LOG_FORMAT" default:"json"`

	Sandbox bool `envconfig:"PUSH_SANDBOX" default:"false"`
	// UI serves the operator dashboard on the admin address; UIAdminToken, when set,
	// allows its write actions (DLQ replay) to whoever gives it.
	UI              bool          `envconfig:"PUSH_UI" default:"true"`
	UIAdminToken    Secret        `envconfig:"PUSH_UI_ADMIN_TOKEN"`
	PProf           bool          `envconfig:"PUSH_PPROF" default:"false"`
	ShutdownTimeout time.Duration `envconfig:"PUSH_SHUTDOWN_TIMEOUT" default:"30s"`
	AckWait         time.Duration `envconfig:"PUSH_ACK_WAIT" default:"30s"`
	MaxJobBytes     int           `envconfig:"PUSH_MAX_JOB_BYTES" default:"1048576"`

	ManageStreams    bool          `envconfig:"PUSH_MANAGE_STREAMS" default:"true"`
	StreamReplicas   int           `envconfig:"PUSH_STREAM_REPLICAS" default:"1"`
	DuplicateWindow  time.Duration `envconfig:"PUSH_DUPLICATE_WINDOW" default:"2m"`
	ResultsMaxAge    time.Duration `envconfig:"PUSH_RESULTS_MAX_AGE" default:"168h"`
	DLQMaxAge        time.Duration `envconfig:"PUSH_DLQ_MAX_AGE" default:"720h"`
	SubjectPrefix    string        `envconfig:"PUSH_SUBJECT_PREFIX" default:"push"`
	StreamPrefix     string        `envconfig:"PUSH_STREAM_PREFIX" default:"PUSH"`
	NotifyStatsEvery time.Duration `envconfig:"PUSH_NOTIFY_STATS_INTERVAL" default:"60s"`
	NotifyStatsFor   time.Duration `envconfig:"PUSH_NOTIFY_STATS_FOR" default:"24h"`

	// Apps holds every configured credential set by name, built from the variables above and
	// the apps file. It is filled by Load, not by envconfig.
	Apps map[string]App `ignored:"true"`
}

// App is one named credential set with its per-class rates (tokens per second).
type App struct {
	Name   string             `json:"-"`
	MIMC   *MIMCCreds         `json:"mimc,omitempty"`
	Notify *NotifyCreds       `json:"notify,omitempty"`
	Rates  map[string]float64 `json:"rates,omitempty"`
}

// MIMCCreds are the MIMC server-side credentials of an app.
type MIMCCreds struct {
	AppID     string `json:"app_id"`
	AppKey    Secret `json:"app_key"`
	AppSecret Secret `json:"app_secret"`
}

// NotifyCreds are the notify API credentials of an app.
type NotifyCreds struct {
	AppID       string `json:"app_id"`
	AccessToken Secret `json:"access_token"`
	GroupID     string `json:"group_id,omitempty"`
	UserID      string `json:"user_id,omitempty"`
}

// Complete reports whether n holds what a notify call needs: an app id and an access token.
func (n *NotifyCreds) Complete() bool { return n != nil && n.AppID != "" && !n.AccessToken.IsZero() }

// Rate returns the app's tokens per second for a class.
func (a App) Rate(class string) float64 { return a.Rates[class] }

// Error is a configuration error that names the variable at fault.
type Error struct {
	Var string
	Msg string
	Err error // the cause, when there is one (Msg says it too)
}

func (e *Error) Error() string { return e.Var + ": " + e.Msg }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Load reads the configuration from the environment and the apps file and validates it.
// Only the PUSH_* names count: the tags hold the full names and the prefix given to
// envconfig is empty, because with a prefix envconfig also reads the bare name (NATS_URL,
// SANDBOX, ...) when the prefixed one is unset.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process("", &c); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return c, &Error{Var: pe.KeyName, Msg: fmt.Sprintf("invalid value %q for type %s", pe.Value, pe.TypeName)}
		}
		return c, err
	}
	if err := c.finish(); err != nil {
		return c, err
	}
	return c, nil
}

func (c *Config) finish() error {
	if err := c.validate(); err != nil {
		return err
	}
	c.Apps = map[string]App{}
	def := App{Name: DefaultApp}
	if c.MIMCAppID != "" || !c.MIMCAppKey.IsZero() || !c.MIMCAppSecret.IsZero() {
		def.MIMC = &MIMCCreds{AppID: c.MIMCAppID, AppKey: c.MIMCAppKey, AppSecret: c.MIMCAppSecret}
		if err := checkMIMC(DefaultApp, def.MIMC, false); err != nil {
			return err
		}
	}
	if c.NotifyAppID != "" || !c.NotifyAccessToken.IsZero() {
		def.Notify = &NotifyCreds{AppID: c.NotifyAppID, AccessToken: c.NotifyAccessToken}
	}
	c.Apps[DefaultApp] = def
	if c.AppsFile != "" {
		apps, err := readAppsFile(c.AppsFile)
		if err != nil {
			return &Error{Var: "PUSH_APPS_FILE", Msg: err.Error()}
		}
		for name, a := range apps {
			if a.MIMC != nil {
				if err := checkMIMC(name, a.MIMC, true); err != nil {
					return err
				}
			}
			c.Apps[name] = a
		}
	}
	for name, a := range c.Apps {
		rates := map[string]float64{}
		for _, cl := range Classes {
			rates[cl] = c.DefaultRate(cl)
		}
		for cl, r := range a.Rates {
			if _, ok := rates[cl]; !ok {
				return &Error{Var: "PUSH_APPS_FILE", Msg: fmt.Sprintf("app %q: unknown rate class %q (want one of %s)", name, cl, strings.Join(Classes, ", "))}
			}
			if !(r > 0) || math.IsInf(r, 0) {
				return &Error{Var: "PUSH_APPS_FILE", Msg: fmt.Sprintf("app %q: rate of %s must be a finite positive number", name, cl)}
			}
			rates[cl] = r
		}
		a.Name = name
		a.Rates = rates
		c.Apps[name] = a
	}
	return nil
}

// checkMIMC checks that an app's MIMC credentials are complete and its app id is a number.
// The error names the variables of the app default, or PUSH_APPS_FILE and the fields of an
// app of the apps file (which may also be named default).
func checkMIMC(app string, m *MIMCCreds, fromFile bool) error {
	names := [3]string{"PUSH_MIMC_APP_ID", "PUSH_MIMC_APP_KEY", "PUSH_MIMC_APP_SECRET"}
	if fromFile {
		names = [3]string{"app_id", "app_key", "app_secret"}
	}
	fail := func(v, msg string) error {
		if fromFile {
			return &Error{Var: "PUSH_APPS_FILE", Msg: fmt.Sprintf("app %q: %s", app, msg)}
		}
		return &Error{Var: v, Msg: fmt.Sprintf("app %q: %s", app, msg)}
	}
	if m.AppID != "" && strings.Trim(m.AppID, "0123456789") != "" {
		return fail(names[0], "MIMC app id must be a decimal number")
	}
	var set, missing []string
	for i, empty := range []bool{m.AppID == "", m.AppKey.IsZero(), m.AppSecret.IsZero()} {
		if empty {
			missing = append(missing, names[i])
		} else {
			set = append(set, names[i])
		}
	}
	if len(missing) > 0 {
		what := strings.Join(missing, ", ") + " empty"
		if len(set) > 0 {
			what = fmt.Sprintf("%s %s set but %s %s not", strings.Join(set, " and "), isAre(len(set)), strings.Join(missing, " and "), isAre(len(missing)))
		}
		return fail(missing[0], "MIMC credentials are incomplete: "+what+" (app id, key and secret go together)")
	}
	return nil
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

func readAppsFile(path string) (map[string]App, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Apps map[string]App `json:"apps"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	for name := range f.Apps {
		if name == "" || len(name) > 64 {
			return nil, fmt.Errorf("app name %q must be 1-64 characters", name)
		}
	}
	return f.Apps, nil
}

// DefaultRate returns the configured rate of a class from the PUSH_RATE_* variables.
func (c *Config) DefaultRate(class string) float64 {
	switch class {
	case ClassP2P:
		return c.RateP2P
	case ClassP2T:
		return c.RateP2T
	case ClassUCS:
		return c.RateUCS
	case ClassNotify:
		return c.RateNotify
	}
	return 0
}

func (c *Config) validate() error {
	positive := []struct {
		v   string
		val float64
	}{
		{"PUSH_RATE_P2P", c.RateP2P}, {"PUSH_RATE_P2T", c.RateP2T}, {"PUSH_RATE_UCS", c.RateUCS}, {"PUSH_RATE_NOTIFY", c.RateNotify},
		{"PUSH_CONCURRENCY", float64(c.Concurrency)}, {"PUSH_MAX_ATTEMPTS", float64(c.MaxAttempts)},
		{"PUSH_MAX_JOB_BYTES", float64(c.MaxJobBytes)}, {"PUSH_STREAM_REPLICAS", float64(c.StreamReplicas)},
	}
	for _, p := range positive {
		if !(p.val > 0) {
			return &Error{Var: p.v, Msg: "must be positive"}
		}
		if math.IsInf(p.val, 0) {
			return &Error{Var: p.v, Msg: "must be finite"}
		}
	}
	durations := []struct {
		v string
		d time.Duration
	}{
		{"PUSH_HTTP_TIMEOUT", c.HTTPTimeout}, {"PUSH_RETRY_INITIAL", c.RetryInitial}, {"PUSH_RETRY_MAX", c.RetryMax},
		{"PUSH_DEDUP_TTL", c.DedupTTL}, {"PUSH_SHUTDOWN_TIMEOUT", c.ShutdownTimeout}, {"PUSH_ACK_WAIT", c.AckWait}, {"PUSH_DUPLICATE_WINDOW", c.DuplicateWindow},
		{"PUSH_RESULTS_MAX_AGE", c.ResultsMaxAge}, {"PUSH_DLQ_MAX_AGE", c.DLQMaxAge}, {"PUSH_NOTIFY_STATS_FOR", c.NotifyStatsFor},
	}
	for _, d := range durations {
		if d.d <= 0 {
			return &Error{Var: d.v, Msg: "must be a positive duration"}
		}
	}
	if c.NotifyStatsEvery < 0 {
		return &Error{Var: "PUSH_NOTIFY_STATS_INTERVAL", Msg: "must not be negative (0 turns polling off)"}
	}
	for _, d := range []struct {
		v string
		d time.Duration
	}{{"PUSH_DUPLICATE_WINDOW", c.DuplicateWindow}, {"PUSH_RESULTS_MAX_AGE", c.ResultsMaxAge}, {"PUSH_DLQ_MAX_AGE", c.DLQMaxAge}} {
		if d.d < 100*time.Millisecond {
			return &Error{Var: d.v, Msg: "must be at least 100ms (NATS refuses less)"}
		}
	}
	if c.AckWait < time.Second {
		return &Error{Var: "PUSH_ACK_WAIT", Msg: "must be at least 1s"}
	}
	if c.RetryMax < c.RetryInitial {
		return &Error{Var: "PUSH_RETRY_MAX", Msg: "must not be less than PUSH_RETRY_INITIAL"}
	}
	if tok := c.UIAdminToken.Reveal(); tok != "" {
		if len(tok) < 16 {
			return &Error{Var: "PUSH_UI_ADMIN_TOKEN", Msg: "must be at least 16 characters (a guessable token guards nothing)"}
		}
		if strings.IndexFunc(tok, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
			return &Error{Var: "PUSH_UI_ADMIN_TOKEN", Msg: "must be printable ASCII without spaces (it is sent as a bearer token)"}
		}
	}
	if c.StreamReplicas > 5 {
		return &Error{Var: "PUSH_STREAM_REPLICAS", Msg: "must be at most 5"}
	}
	for _, u := range []struct{ v, s string }{{"PUSH_MIMC_URL", c.MIMCURL}, {"PUSH_NOTIFY_URL", c.NotifyURL}} {
		if u.s == "" {
			continue
		}
		pu, err := url.Parse(u.s)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return &Error{Var: u.v, Msg: "must be an http(s) URL"}
		}
	}
	switch strings.ToLower(c.LogLevel) {
	case "trace", "debug", "info", "warn", "error", "fatal", "panic", "disabled":
	default:
		return &Error{Var: "PUSH_LOG_LEVEL", Msg: "must be one of trace, debug, info, warn, error"}
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		return &Error{Var: "PUSH_LOG_FORMAT", Msg: "must be json or console"}
	}
	if !validToken(c.SubjectPrefix, true) {
		return &Error{Var: "PUSH_SUBJECT_PREFIX", Msg: "must be a subject prefix without wildcards or spaces"}
	}
	if !validToken(c.StreamPrefix, false) {
		return &Error{Var: "PUSH_STREAM_PREFIX", Msg: "must contain only letters, digits, '-' and '_'"}
	}
	if c.EmbeddedListen == "" {
		return &Error{Var: "PUSH_EMBEDDED_LISTEN", Msg: "must be host:port"}
	}
	if _, _, err := parseSync(c.EmbeddedSync); err != nil {
		return &Error{Var: "PUSH_EMBEDDED_SYNC", Msg: err.Error()}
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		return &Error{Var: "PUSH_NATS_TLS_CERT", Msg: "PUSH_NATS_TLS_CERT and PUSH_NATS_TLS_KEY must be set together"}
	}
	for _, f := range []struct{ v, path string }{
		{"PUSH_NATS_CREDS", c.NATSCreds}, {"PUSH_NATS_TLS_CA", c.NATSTLSCA}, {"PUSH_NATS_TLS_CERT", c.NATSTLSCert}, {"PUSH_NATS_TLS_KEY", c.NATSTLSKey},
	} {
		if err := readableFile(f.path); err != nil {
			return &Error{Var: f.v, Msg: err.Error()}
		}
	}
	return nil
}

// EmbeddedSyncPolicy returns how the embedded server syncs its file store to the disk
// (PUSH_EMBEDDED_SYNC): always, an fsync after every write before it is acknowledged; or
// every interval, where 0 means the server's default (2 minutes). Writes reach the
// operating system at once either way, so a killed process loses nothing; the interval is
// what a power loss or a kernel crash can take.
func (c *Config) EmbeddedSyncPolicy() (always bool, interval time.Duration) {
	always, interval, _ = parseSync(c.EmbeddedSync)
	return always, interval
}

func parseSync(s string) (always bool, interval time.Duration, err error) {
	switch s = strings.TrimSpace(s); {
	case s == "":
		return false, 0, nil
	case strings.EqualFold(s, "always"):
		return true, 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return false, 0, fmt.Errorf("invalid value %q: want always, a positive duration such as 10s, or empty for the server's default (2m)", s)
	}
	return false, d, nil
}

// readableFile checks that path, when set, is a file this process can open.
func readableFile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory, not a file", path)
	}
	return nil
}

func validToken(s string, dots bool) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		case r == '.' && dots:
		default:
			return false
		}
	}
	return !strings.HasPrefix(s, ".") && !strings.HasSuffix(s, ".") && !strings.Contains(s, "..")
}

// AppNames returns the configured app names, sorted.
func (c *Config) AppNames() []string {
	names := make([]string, 0, len(c.Apps))
	for n := range c.Apps {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Secrets returns every configured secret value, for scrubbing text that must never hold one.
func (c *Config) Secrets() []string {
	var out []string
	add := func(s Secret) {
		if !s.IsZero() {
			out = append(out, s.Reveal())
		}
	}
	add(c.NATSPassword)
	add(c.NATSToken)
	add(c.UIAdminToken)
	for _, a := range c.Apps {
		if a.MIMC != nil {
			add(a.MIMC.AppKey)
			add(a.MIMC.AppSecret)
		}
		if a.Notify != nil {
			add(a.Notify.AccessToken)
		}
	}
	return out
}
