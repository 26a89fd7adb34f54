package dashboard

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

const (
	// cookieName is the login session cookie.
	cookieName = "pushworker_ui"
	// sessionFor is how long a login lasts.
	sessionFor = 12 * time.Hour
	// uiHeader must be set on cookie-authenticated writes: a cross-site form cannot set it,
	// and a cross-site script cannot without a CORS preflight the dashboard never allows.
	uiHeader = "X-Pushworker-UI"
)

// auth decides who may use the write actions: nobody without a token (the dashboard is
// read-only), else whoever gives it as a bearer token or logged in with it.
type auth struct {
	tokenHash [32]byte // sha256 of the token; zero without a token
	enabled   bool
	key       []byte        // signs session cookies
	fails     *rate.Limiter // failed logins
}

func newAuth(token string) *auth {
	a := &auth{fails: rate.NewLimiter(1, 10)}
	if token != "" {
		a.enabled = true
		a.tokenHash = sha256.Sum256([]byte(token))
		k := sha256.Sum256([]byte("pushworker-ui-session\x00" + token))
		a.key = k[:]
	}
	return a
}

// tokenOK compares a given token with the configured one in constant time (hashes first,
// so that not even the length leaks).
func (a *auth) tokenOK(given string) bool {
	h := sha256.Sum256([]byte(given))
	return a.enabled && subtle.ConstantTimeCompare(h[:], a.tokenHash[:]) == 1
}

func (a *auth) sign(exp int64) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(strconv.FormatInt(exp, 10)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// session returns a new session cookie value: its expiry and a MAC over it.
func (a *auth) session(now time.Time) string {
	exp := now.Add(sessionFor).Unix()
	return strconv.FormatInt(exp, 10) + "." + a.sign(exp)
}

func (a *auth) sessionOK(v string, now time.Time) bool {
	expS, mac, ok := strings.Cut(v, ".")
	if !a.enabled || !ok {
		return false
	}
	exp, err := strconv.ParseInt(expS, 10, 64)
	if err != nil || now.Unix() > exp {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(a.sign(exp)))
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", false
}

// admin reports whether r carries the token or a valid session (for the page's display;
// writes go through allowWrite).
func (a *auth) admin(r *http.Request, now time.Time) bool {
	if tok, ok := bearer(r); ok {
		return a.tokenOK(tok)
	}
	c, err := r.Cookie(cookieName)
	return err == nil && a.sessionOK(c.Value, now)
}

// sameOrigin reports whether a browser request comes from the dashboard's own origin.
func sameOrigin(r *http.Request) bool {
	if r.Header.Get(uiHeader) != "1" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // same-origin requests of some browsers, and non-browser clients
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// allowWrite decides a request for a write action: 0 when allowed, else the HTTP status
// and the reason to show.
func (a *auth) allowWrite(r *http.Request, now time.Time) (int, string) {
	if !a.enabled {
		return http.StatusForbidden, "read-only: PUSH_UI_ADMIN_TOKEN is not set on this replica, so the dashboard changes nothing (use pushctl, or set the token)"
	}
	if tok, ok := bearer(r); ok {
		if a.tokenOK(tok) {
			return 0, ""
		}
		return http.StatusUnauthorized, "wrong admin token"
	}
	c, err := r.Cookie(cookieName)
	if err != nil || !a.sessionOK(c.Value, now) {
		return http.StatusUnauthorized, "log in with the admin token (PUSH_UI_ADMIN_TOKEN) first, or send it as Authorization: Bearer <token>"
	}
	if !sameOrigin(r) {
		return http.StatusForbidden, "cross-site request refused"
	}
	return 0, ""
}
