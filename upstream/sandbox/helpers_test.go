package sandbox

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// creds is the credential part of a push body of the default MIMC app.
const creds = `"appId":2882303761517,"appKey":"sandbox-key","appSecret":"sandbox-secret"`

// start runs a sandbox with DefaultConfig changed by mod on a free port.
func start(t *testing.T, mod func(*Config)) (*Server, string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.StatsStep = 20 * time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	s := New(cfg)
	url, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, url
}

// answer is a decoded upstream answer.
type answer struct {
	Status  int
	Code    int
	Message *string
	Data    json.RawMessage
	Raw     string
}

func (a answer) msg() string {
	if a.Message == nil {
		return ""
	}
	return *a.Message
}

// call sends one request; a POST with a body is sent as application/json unless header
// sets Content-Type.
func call(t *testing.T, method, url string, header map[string]string, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = []string{v} // as given, like the worker's client
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{Status: resp.StatusCode, Raw: string(raw)}
	var env struct {
		Code    *int            `json:"code"`
		Message *string         `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
	if json.Unmarshal(raw, &env) == nil && env.Code != nil {
		a.Code, a.Message, a.Data = *env.Code, env.Message, env.Data
	}
	return a
}

func push(t *testing.T, base, path, fields string) answer {
	t.Helper()
	return call(t, http.MethodPost, base+path, nil, "{"+creds+","+fields+"}")
}

// decode decodes JSON with numbers kept exact.
func decode(t *testing.T, raw []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
}

// packetSeq returns the increasing part of a packet id.
func packetSeq(t *testing.T, id string) (prefix string, seq int64) {
	t.Helper()
	i := strings.LastIndexByte(id, '-')
	if i <= 0 {
		t.Fatalf("packet id %q has no random string and number", id)
	}
	n, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil {
		t.Fatalf("packet id %q: %v", id, err)
	}
	return id[:i], n
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
