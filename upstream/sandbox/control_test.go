package sandbox

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const p2pFields = `"fromAccount":"a","toAccount":"b","msg":"hi"`

func TestFailNext(t *testing.T) {
	tests := []struct {
		name    string
		prefix  string
		n       int
		status  int
		body    string
		path    string // pushed to
		want    []int  // statuses of consecutive pushes
		wantRaw string // answer body of the first push
	}{
		{"prefix matches", "/api/push/p2p/", 2, 500, `{"code":500,"message":"boom","data":null}`, "/api/push/p2p/", []int{500, 500, 200}, `{"code":500,"message":"boom","data":null}`},
		{"prefix does not match", "/api/push/p2t/", 2, 500, "", "/api/push/p2p/", []int{200, 200}, ""},
		{"any path", "", 1, 502, "not json", "/api/push/p2p/", []int{502, 200}, "not json"},
		{"defaults", "/api/push/", 1, 0, "", "/api/push/p2p/", []int{500, 200}, `{"code":500,"message":"injected failure","data":null}`},
		{"http 200 with an error code", "/api", 1, 200, `{"code":500,"message":"internal","data":null}`, "/api/push/p2p/", []int{200, 200}, `{"code":500,"message":"internal","data":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base := start(t, nil)
			s.FailNext(tt.prefix, tt.n, tt.status, tt.body)
			for i, want := range tt.want {
				a := push(t, base, tt.path, p2pFields)
				if a.Status != want {
					t.Fatalf("push %d: HTTP %d %s, want %d", i, a.Status, a.Raw, want)
				}
				if i == 0 && tt.wantRaw != "" && a.Raw != tt.wantRaw {
					t.Fatalf("push 0 answered %s, want %s", a.Raw, tt.wantRaw)
				}
			}
		})
	}
	t.Run("queued rules and removal", func(t *testing.T) {
		s, base := start(t, nil)
		s.FailNext("/api/push/p2p/", 1, 500, "")
		s.FailNext("/api/push/p2p/", 1, 503, "")
		s.FailNext("/api/push/ucs/", 5, 500, "")
		s.FailNext("/api/push/ucs/", 0, 0, "") // drops the ucs rule
		for _, want := range []int{500, 503, 200} {
			if a := push(t, base, "/api/push/p2p/", p2pFields); a.Status != want {
				t.Fatalf("HTTP %d, want %d", a.Status, want)
			}
		}
		if a := push(t, base, "/api/push/ucs/singleMsgPush", `"fromAccount":"a","topicId":1,"message":"m"`); a.Status != 200 {
			t.Fatalf("removed rule still applies: %s", a.Raw)
		}
		if st := s.Stats(); st.Injected != 2 {
			t.Fatalf("injected = %d, want 2", st.Injected)
		}
	})
}

func TestOutageAndLatency(t *testing.T) {
	s, base := start(t, nil)
	s.SetOutage(true)
	a := push(t, base, "/api/push/p2p/", p2pFields)
	if a.Status != 503 || a.Code != 503 {
		t.Fatalf("outage: HTTP %d %s", a.Status, a.Raw)
	}
	if a := call(t, http.MethodPost, base+"/push/notify", nil, `{}`); a.Status != 503 {
		t.Fatalf("outage on notify: HTTP %d %s", a.Status, a.Raw)
	}
	s.SetOutage(false)
	if a := push(t, base, "/api/push/p2p/", p2pFields); a.Status != 200 {
		t.Fatalf("after the outage: %s", a.Raw)
	}

	s.SetLatency(80 * time.Millisecond)
	begin := time.Now()
	if a := push(t, base, "/api/push/p2p/", p2pFields); a.Status != 200 {
		t.Fatalf("with latency: %s", a.Raw)
	}
	if d := time.Since(begin); d < 80*time.Millisecond {
		t.Fatalf("answered after %v, want at least 80ms", d)
	}
	s.SetLatency(0)
	// Close ends a request waiting for its latency.
	s.SetLatency(time.Hour)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Post(base+"/api/push/p2p/", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(50 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting request did not end")
	}
}

func TestControlEndpoints(t *testing.T) {
	s, base := start(t, nil)
	ctl := func(method, name, body string) answer {
		t.Helper()
		a := call(t, method, base+"/_sandbox/"+name, nil, body)
		if a.Status != 200 {
			t.Fatalf("%s /_sandbox/%s: HTTP %d %s", method, name, a.Status, a.Raw)
		}
		return a
	}
	a := ctl(http.MethodPost, "fault", `{"latency_ms":30,"outage":false,"fail_next":{"path":"/api/push/p2p/","n":2,"status":500,"body":"x"}}`)
	var f struct {
		LatencyMS float64    `json:"latency_ms"`
		Outage    bool       `json:"outage"`
		FailNext  []FailRule `json:"fail_next"`
	}
	decode(t, []byte(a.Raw), &f)
	if f.LatencyMS != 30 || f.Outage || len(f.FailNext) != 1 || f.FailNext[0].N != 2 {
		t.Fatalf("fault state %s", a.Raw)
	}
	if got := s.Faults(); got.Latency != 30*time.Millisecond || len(got.FailNext) != 1 {
		t.Fatalf("Faults() = %+v", got)
	}
	for _, want := range []int{500, 500, 200} {
		if a := push(t, base, "/api/push/p2p/", p2pFields); a.Status != want {
			t.Fatalf("HTTP %d %s, want %d", a.Status, a.Raw, want)
		}
	}
	ctl(http.MethodPost, "fault", `{"latency_ms":0,"outage":true}`)
	if a := push(t, base, "/api/push/p2p/", p2pFields); a.Status != 503 {
		t.Fatalf("outage over HTTP: %s", a.Raw)
	}
	ctl(http.MethodPost, "fault", `{"outage":false,"fail_next":[{"path":"/push/","n":1,"status":502}]}`)
	if a := call(t, http.MethodPost, base+"/push/notify", nil, `{}`); a.Status != 502 {
		t.Fatalf("fail_next list over HTTP: %s", a.Raw)
	}

	var st Stats
	decode(t, []byte(ctl(http.MethodGet, "stats", "").Raw), &st)
	if st.Requests != 5 || st.Injected != 4 || st.Classes[ClassP2P].Calls != 1 || st.Paths["/api/push/p2p/"] != 4 || st.Paths["/push/notify"] != 1 {
		t.Fatalf("stats over HTTP: %+v", st)
	}
	var reqs []struct {
		Method, Path, Body string
		Header             map[string][]string
	}
	decode(t, []byte(ctl(http.MethodGet, "requests?path=/api/push/&limit=2", "").Raw), &reqs)
	if len(reqs) != 2 || reqs[1].Path != "/api/push/p2p/" || !strings.Contains(reqs[1].Body, `"toAccount":"b"`) {
		t.Fatalf("requests over HTTP: %+v", reqs)
	}

	ctl(http.MethodPost, "reset", "")
	st = Stats{}
	decode(t, []byte(ctl(http.MethodGet, "stats", "").Raw), &st)
	if st.Requests != 0 || st.Classes[ClassP2P].Calls != 0 || len(st.Paths) != 0 || len(s.Requests()) != 0 {
		t.Fatalf("after reset: %+v, %d requests", st, len(s.Requests()))
	}
	if got := s.Faults(); got.Latency != 0 || got.Outage || len(got.FailNext) != 0 {
		t.Fatalf("faults after reset: %+v", got)
	}
	ctl(http.MethodPost, "notify", `{"bool_answer":true}`)
	if a := call(t, http.MethodPost, base+"/push/notify", notifyHeader, `{"audience":"all"}`); string(a.Data) != "true" {
		t.Fatalf("bool answer over HTTP: %s", a.Raw)
	}
	if a := call(t, http.MethodGet, base+"/_sandbox/nope", nil, ""); a.Status != 404 {
		t.Fatalf("unknown control endpoint: HTTP %d", a.Status)
	}
	ctl(http.MethodGet, "health", "")
}

func TestRecording(t *testing.T) {
	t.Run("ring keeps the last N", func(t *testing.T) {
		s, base := start(t, func(c *Config) { c.RecordRequests = 3 })
		for _, acc := range []string{"u1", "u2", "u3", "u4", "u5"} {
			push(t, base, "/api/push/p2p/", `"fromAccount":"a","toAccount":"`+acc+`","msg":"hi"`)
		}
		call(t, http.MethodGet, base+"/_sandbox/stats", nil, "") // not recorded
		reqs := s.Requests()
		if len(reqs) != 3 {
			t.Fatalf("%d requests, want 3", len(reqs))
		}
		for i, acc := range []string{"u3", "u4", "u5"} {
			var b struct{ ToAccount string }
			if err := json.Unmarshal(reqs[i].Body, &b); err != nil || b.ToAccount != acc {
				t.Fatalf("request %d went to %q, want %q", i, b.ToAccount, acc)
			}
			if reqs[i].Method != http.MethodPost || reqs[i].Header.Get("Content-Type") != "application/json" || reqs[i].At.IsZero() {
				t.Fatalf("request %d: %+v", i, reqs[i])
			}
		}
		reqs[0].Body[0] = 'X'
		if s.Requests()[0].Body[0] == 'X' {
			t.Fatal("Requests returned the recorder's own body")
		}
	})
	t.Run("off", func(t *testing.T) {
		s, base := start(t, func(c *Config) { c.RecordRequests = -1 })
		push(t, base, "/api/push/p2p/", p2pFields)
		if reqs := s.Requests(); len(reqs) != 0 {
			t.Fatalf("%d requests recorded with recording off", len(reqs))
		}
		if st := s.Stats(); st.Requests != 1 {
			t.Fatalf("requests = %d, want 1", st.Requests)
		}
	})
}

func TestStartClose(t *testing.T) {
	s := New(DefaultConfig())
	base, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if s.URL() != base || !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("URL() = %q, Start = %q", s.URL(), base)
	}
	if _, err := s.Start("127.0.0.1:0"); err == nil {
		t.Fatal("second Start succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := http.Get(base + "/_sandbox/health"); err == nil {
		t.Fatal("still serving after Close")
	}
	// The handler also works without Start.
	h := New(DefaultConfig())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/push/p2p/", strings.NewReader(`{`+creds+`,`+p2pFields+`}`)))
	if rec.Code != 415 {
		t.Fatalf("without Content-Type: HTTP %d", rec.Code)
	}
}

func BenchmarkP2P(b *testing.B) {
	s := New(Config{
		MIMCApps:       []MIMCApp{{AppID: DefaultMIMCAppID, AppKey: DefaultMIMCAppKey, AppSecret: DefaultMIMCAppSecret}},
		Rates:          map[string]float64{ClassP2P: 1e9},
		RecordRequests: DefaultRecordRequests,
	})
	body := []byte(`{` + creds + `,"fromAccount":"shop","toAccount":"u42","msg":"Your order shipped","isStore":true}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/api/push/p2p/", strings.NewReader(string(body)))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatalf("HTTP %d %s", rec.Code, rec.Body)
			}
		}
	})
}
