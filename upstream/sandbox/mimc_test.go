package sandbox

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMIMCCredentials(t *testing.T) {
	_, base := start(t, nil)
	const fields = `"fromAccount":"a","toAccount":"b","msg":"hi"`
	tests := []struct {
		name   string
		body   string
		status int
		want   string // in the message
	}{
		{"good", `{` + creds + `,` + fields + `}`, 200, "success"},
		{"no credentials", `{` + fields + `}`, 401, "required"},
		{"no appSecret", `{"appId":2882303761517,"appKey":"sandbox-key",` + fields + `}`, 401, "required"},
		{"appId as string", `{"appId":"2882303761517","appKey":"sandbox-key","appSecret":"sandbox-secret",` + fields + `}`, 400, "appId must be a JSON number"},
		{"appId as float", `{"appId":2.882303761517e12,"appKey":"sandbox-key","appSecret":"sandbox-secret",` + fields + `}`, 400, "appId"},
		{"unknown appId", `{"appId":2882303761518,"appKey":"sandbox-key","appSecret":"sandbox-secret",` + fields + `}`, 401, "unknown appId"},
		{"wrong appKey", `{"appId":2882303761517,"appKey":"nope","appSecret":"sandbox-secret",` + fields + `}`, 401, "wrong"},
		{"wrong appSecret", `{"appId":2882303761517,"appKey":"sandbox-key","appSecret":"nope",` + fields + `}`, 401, "wrong"},
		{"credentials checked before fields", `{"appId":2882303761517,"appKey":"sandbox-key","appSecret":"nope"}`, 401, "wrong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, http.MethodPost, base+"/api/push/p2p/", nil, tt.body)
			if a.Status != tt.status || a.Code != tt.status || !strings.Contains(a.msg(), tt.want) {
				t.Fatalf("got HTTP %d %s, want HTTP %d code %d with %q", a.Status, a.Raw, tt.status, tt.status, tt.want)
			}
			if tt.status != 200 && string(a.Data) != "null" {
				t.Errorf("data = %s, want null", a.Data)
			}
		})
	}
}

func TestMIMCFields(t *testing.T) {
	_, base := start(t, nil)
	tests := []struct {
		name   string
		path   string
		fields string
		status int
		want   string // in the message
	}{
		{"p2p ok", "/api/push/p2p/", `"fromAccount":"a","toAccount":"b","msg":"hi","fromResource":"r","isStore":false,"bizType":"x"`, 200, "success"},
		{"p2p without trailing slash", "/api/push/p2p", `"fromAccount":"a","toAccount":"b","msg":"hi"`, 200, "success"},
		{"p2p no fromAccount", "/api/push/p2p/", `"toAccount":"b","msg":"hi"`, 400, "fromAccount is required"},
		{"p2p empty fromAccount", "/api/push/p2p/", `"fromAccount":"","toAccount":"b","msg":"hi"`, 400, "fromAccount must not be empty"},
		{"p2p no toAccount", "/api/push/p2p/", `"fromAccount":"a","msg":"hi"`, 400, "toAccount is required"},
		{"p2p toAccount number", "/api/push/p2p/", `"fromAccount":"a","toAccount":5,"msg":"hi"`, 400, "toAccount must be a string"},
		{"p2p no msg", "/api/push/p2p/", `"fromAccount":"a","toAccount":"b"`, 400, "msg is required"},
		{"p2p message instead of msg", "/api/push/p2p/", `"fromAccount":"a","toAccount":"b","message":"hi"`, 400, "msg is required"},
		{"p2p bad msgType", "/api/push/p2p/", `"fromAccount":"a","toAccount":"b","msg":"hi","msgType":"text"`, 400, "msgType"},
		{"p2p base64 ok", "/api/push/p2p/", `"fromAccount":"a","toAccount":"b","msg":"aGk=","msgType":"base64"`, 200, "success"},
		{"p2p bad base64", "/api/push/p2p/", `"fromAccount":"a","toAccount":"b","msg":"hi!","msgType":"base64"`, 400, "msg is not valid standard base64"},
		{"p2p isStore string", "/api/push/p2p/", `"fromAccount":"a","toAccount":"b","msg":"hi","isStore":"yes"`, 400, "isStore must be true or false"},
		{"p2p/more ok", "/api/push/p2p/more", `"fromAccount":"a","toAccounts":["b","c"],"msg":"hi"`, 200, "success"},
		{"p2p/more empty list", "/api/push/p2p/more", `"fromAccount":"a","toAccounts":[],"msg":"hi"`, 400, "toAccounts is required"},
		{"p2p/more empty account", "/api/push/p2p/more", `"fromAccount":"a","toAccounts":["b",""],"msg":"hi"`, 400, "toAccounts[1] must not be empty"},
		{"p2p/more numbers", "/api/push/p2p/more", `"fromAccount":"a","toAccounts":[1],"msg":"hi"`, 400, "toAccounts must be a list of strings"},
		{"p2t ok", "/api/push/p2t/", `"fromAccount":"a","topicId":9007199254740993,"msg":"hi"`, 200, "success"},
		{"p2t topicId string", "/api/push/p2t/", `"fromAccount":"a","topicId":"9007199254740993","msg":"hi"`, 400, "topicId must be a JSON number, not a string"},
		{"p2t topicId float", "/api/push/p2t/", `"fromAccount":"a","topicId":9.007199254740993e15,"msg":"hi"`, 400, "topicId must be a 64-bit integer"},
		{"p2t topicId too big", "/api/push/p2t/", `"fromAccount":"a","topicId":92233720368547758070,"msg":"hi"`, 400, "topicId must be a 64-bit integer"},
		{"p2t no topicId", "/api/push/p2t/", `"fromAccount":"a","msg":"hi"`, 400, "topicId is required"},
		{"p2t/more ok", "/api/push/p2t/more", `"fromAccount":"a","topicIds":[1,2],"msg":"hi"`, 200, "success"},
		{"p2t/more string id", "/api/push/p2t/more", `"fromAccount":"a","topicIds":[1,"2"],"msg":"hi"`, 400, "topicIds[1] must be a JSON number"},
		{"p2t/more empty", "/api/push/p2t/more", `"fromAccount":"a","topicIds":[],"msg":"hi"`, 400, "topicIds is required"},
		{"ucs single ok", "/api/push/ucs/singleMsgPush", `"fromAccount":"a","topicId":1,"message":"hi"`, 200, "success"},
		{"ucs single msg instead of message", "/api/push/ucs/singleMsgPush", `"fromAccount":"a","topicId":1,"msg":"hi"`, 400, "message is required"},
		{"ucs multiMsg ok", "/api/push/ucs/multiMsgPush", `"fromAccount":"a","topicId":1,"messages":["x","y"]`, 200, "success"},
		{"ucs multiMsg empty", "/api/push/ucs/multiMsgPush", `"fromAccount":"a","topicId":1,"messages":[]`, 400, "messages is required"},
		{"ucs multiMsg bad base64", "/api/push/ucs/multiMsgPush", `"fromAccount":"a","topicId":1,"messages":["eA==","%%"],"msgType":"base64"`, 400, "messages[1] is not valid"},
		{"ucs multiTopic ok", "/api/push/ucs/multiTopicPush", `"fromAccount":"a","topicIds":[1,2],"message":"hi"`, 200, "success"},
		{"ucs multiTopic no message", "/api/push/ucs/multiTopicPush", `"fromAccount":"a","topicIds":[1,2]`, 400, "message is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := push(t, base, tt.path, tt.fields)
			if a.Status != tt.status || a.Code != tt.status || !strings.Contains(a.msg(), tt.want) {
				t.Fatalf("got HTTP %d %s, want HTTP %d with %q", a.Status, a.Raw, tt.status, tt.want)
			}
		})
	}
}

func TestProtocolErrors(t *testing.T) {
	_, base := start(t, nil)
	body := `{` + creds + `,"fromAccount":"a","toAccount":"b","msg":"hi"}`
	tests := []struct {
		name   string
		method string
		path   string
		header map[string]string
		body   string
		status int
	}{
		{"not JSON", http.MethodPost, "/api/push/p2p/", nil, `{"appId":`, 400},
		{"array body", http.MethodPost, "/api/push/p2p/", nil, `[1,2]`, 400},
		{"form content type", http.MethodPost, "/api/push/p2p/", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body, 415},
		{"charset is fine", http.MethodPost, "/api/push/p2p/", map[string]string{"Content-Type": "application/json; charset=utf-8"}, body, 200},
		{"GET a push endpoint", http.MethodGet, "/api/push/p2p/", nil, "", 405},
		{"unknown path", http.MethodPost, "/api/push/p3p/", nil, body, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, tt.method, base+tt.path, tt.header, tt.body)
			if a.Status != tt.status || a.Code != tt.status {
				t.Fatalf("got HTTP %d %s, want %d", a.Status, a.Raw, tt.status)
			}
		})
	}
}

func TestPacketIDs(t *testing.T) {
	_, base := start(t, nil)
	var last int64
	var prefix string
	next := func(id string) {
		t.Helper()
		p, n := packetSeq(t, id)
		if prefix == "" {
			prefix = p
		}
		if p != prefix || n <= last {
			t.Fatalf("packet id %q after %s-%d: want the same random string and a greater number", id, prefix, last)
		}
		last = n
	}
	for i := 0; i < 5; i++ {
		a := push(t, base, "/api/push/p2p/", `"fromAccount":"a","toAccount":"b","msg":"hi"`)
		var d struct{ PacketID string }
		decode(t, a.Data, &d)
		next(d.PacketID)
	}
	a := push(t, base, "/api/push/ucs/multiMsgPush", `"fromAccount":"a","topicId":1,"messages":["x","y","z"]`)
	var mm struct{ PacketIDs []string }
	decode(t, a.Data, &mm)
	if len(mm.PacketIDs) != 1 {
		t.Fatalf("multiMsgPush packetIds = %v, want one id", mm.PacketIDs)
	}
	next(mm.PacketIDs[0])
	a = push(t, base, "/api/push/ucs/multiTopicPush", `"fromAccount":"a","topicIds":[1,2,3],"message":"hi"`)
	var mt struct {
		SuccPacketIDs []string      `json:"succPacketIds"`
		FailTopicIDs  []json.Number `json:"failTopicIds"`
	}
	decode(t, a.Data, &mt)
	if len(mt.SuccPacketIDs) != 3 || mt.FailTopicIDs == nil || len(mt.FailTopicIDs) != 0 {
		t.Fatalf("multiTopicPush data = %s, want 3 packet ids and an empty failTopicIds", a.Data)
	}
	for _, id := range mt.SuccPacketIDs {
		next(id)
	}
	a = push(t, base, "/api/push/p2t/more", `"fromAccount":"a","topicIds":[1,2,3],"msg":"hi"`)
	var pm struct{ PacketID string }
	decode(t, a.Data, &pm)
	next(pm.PacketID)
}

func TestTopicIDReceivedExactly(t *testing.T) {
	s, base := start(t, nil)
	const id = "9007199254740993" // 2^53 + 1: a float64 round trip makes it ...992
	if a := push(t, base, "/api/push/p2t/", `"fromAccount":"a","topicId":`+id+`,"msg":"hi"`); a.Status != 200 {
		t.Fatalf("push: %s", a.Raw)
	}
	reqs := s.Requests()
	if len(reqs) != 1 {
		t.Fatalf("recorded %d requests, want 1", len(reqs))
	}
	var got struct{ TopicID json.Number }
	decode(t, reqs[0].Body, &got)
	if got.TopicID.String() != id {
		t.Fatalf("recorded topicId %s, want %s", got.TopicID, id)
	}
}

func TestRateLimit(t *testing.T) {
	s, base := start(t, func(c *Config) {
		c.Rates = map[string]float64{ClassP2P: 50, ClassP2T: 50, ClassUCS: 50}
		c.MIMCApps = append(c.MIMCApps, MIMCApp{AppID: "42", AppKey: "k", AppSecret: "s"})
	})
	accounts := func(n int) string {
		l := make([]string, n)
		for i := range l {
			l[i] = `"u` + string(rune('a'+i%26)) + `"`
		}
		return "[" + strings.Join(l, ",") + "]"
	}
	ids := func(n int) string {
		l := make([]string, n)
		for i := range l {
			l[i] = "1"
		}
		return "[" + strings.Join(l, ",") + "]"
	}
	// Limit 50 × 1.05 = 52.5 tokens in any sliding second, per app and class.
	steps := []struct {
		name   string
		path   string
		fields string
		status int
	}{
		{"p2p/more weight 30", "/api/push/p2p/more", `"fromAccount":"a","toAccounts":` + accounts(30) + `,"msg":"m"`, 200},
		{"p2p/more weight 30 over", "/api/push/p2p/more", `"fromAccount":"a","toAccounts":` + accounts(30) + `,"msg":"m"`, 429},
		{"p2p/more weight 22 fits", "/api/push/p2p/more", `"fromAccount":"a","toAccounts":` + accounts(22) + `,"msg":"m"`, 200},
		{"p2p weight 1 over", "/api/push/p2p/", `"fromAccount":"a","toAccount":"b","msg":"m"`, 429},
		{"p2t class is separate", "/api/push/p2t/more", `"fromAccount":"a","topicIds":` + ids(50) + `,"msg":"m"`, 200},
		{"p2t weight 3 over", "/api/push/p2t/more", `"fromAccount":"a","topicIds":` + ids(3) + `,"msg":"m"`, 429},
		{"p2t weight 1 fits (51)", "/api/push/p2t/", `"fromAccount":"a","topicId":1,"msg":"m"`, 200},
		{"ucs multiMsg weight 41", "/api/push/ucs/multiMsgPush", `"fromAccount":"a","topicId":1,"messages":` + accounts(41), 200},
		{"ucs multiTopic weight 10", "/api/push/ucs/multiTopicPush", `"fromAccount":"a","topicIds":` + ids(10) + `,"message":"m"`, 200},
		{"ucs single fits (52)", "/api/push/ucs/singleMsgPush", `"fromAccount":"a","topicId":1,"message":"m"`, 200},
		{"ucs single over (53)", "/api/push/ucs/singleMsgPush", `"fromAccount":"a","topicId":1,"message":"m"`, 429},
	}
	for _, st := range steps {
		a := push(t, base, st.path, st.fields)
		if a.Status != st.status {
			t.Fatalf("%s: HTTP %d %s, want %d", st.name, a.Status, a.Raw, st.status)
		}
		if st.status == 429 && (a.Code != 429 || a.msg() != "rate limit exceeded") {
			t.Fatalf("%s: answer %s", st.name, a.Raw)
		}
	}
	// Another app has windows of its own; a call heavier than the limit goes into an empty one.
	other := `"appId":42,"appKey":"k","appSecret":"s","fromAccount":"a","toAccounts":` + accounts(60) + `,"msg":"m"`
	if a := call(t, http.MethodPost, base+"/api/push/p2p/more", nil, "{"+other+"}"); a.Status != 200 {
		t.Fatalf("heavy call into an empty window: %s", a.Raw)
	}
	if a := call(t, http.MethodPost, base+"/api/push/p2p/more", nil, "{"+other+"}"); a.Status != 429 {
		t.Fatalf("heavy call into a full window: %s", a.Raw)
	}

	st := s.Stats()
	want := map[string]ClassStats{
		ClassP2P:    {Rate: 50, Calls: 3, Tokens: 112, RateLimited: 3, WorstWindow: 60},
		ClassP2T:    {Rate: 50, Calls: 2, Tokens: 51, RateLimited: 1, WorstWindow: 51},
		ClassUCS:    {Rate: 50, Calls: 3, Tokens: 52, RateLimited: 1, WorstWindow: 52},
		ClassNotify: {},
	}
	for c, w := range want {
		if got := st.Classes[c]; got != w {
			t.Errorf("Stats().Classes[%s] = %+v, want %+v", c, got, w)
		}
	}
	if got := st.Apps[DefaultMIMCAppID][ClassP2P]; got.Tokens != 52 || got.WorstWindow != 52 {
		t.Errorf("default app p2p = %+v, want 52 tokens", got)
	}
	if st.Paths["/api/push/p2p/more"] != 5 || st.Requests != 13 {
		t.Errorf("paths %v, requests %d", st.Paths, st.Requests)
	}
}

// TestWindow checks the sliding window on a synthetic clock.
func TestWindow(t *testing.T) {
	const ms = int64(time.Millisecond)
	w := newWindow(50, 0.05) // 52.5 tokens
	steps := []struct {
		at     int64
		weight int64
		ok     bool
	}{
		{0, 50, true},
		{500 * ms, 2, true},  // 52
		{999 * ms, 1, false}, // 53 > 52.5
		{1000 * ms, 1, true}, // the call at 0 left: 3
		{1400 * ms, 49, true},
		{1450 * ms, 1, false},  // 52 + 1
		{1500 * ms, 1, true},   // the call at 500 ms left: 51
		{5000 * ms, 200, true}, // heavier than the limit, into an empty window
		{5999 * ms, 1, false},
		{6000 * ms, 1, true},
	}
	for i, st := range steps {
		if got := w.admit(st.at, st.weight); got != st.ok {
			t.Fatalf("step %d (at %d ms, weight %d): admitted %v, want %v", i, st.at/ms, st.weight, got, st.ok)
		}
	}
	got := w.stats()
	if want := (ClassStats{Rate: 50, Calls: 7, Tokens: 304, RateLimited: 3, WorstWindow: 200}); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	unlimited := newWindow(0, 0.05)
	for i := int64(0); i < 1000; i++ {
		if !unlimited.admit(i*ms/10, 5) {
			t.Fatal("unlimited window refused a call")
		}
	}
	if st := unlimited.stats(); st.WorstWindow != 5000 || st.Calls != 1000 {
		t.Fatalf("unlimited stats %+v", st)
	}
}

// TestRateLimitConcurrent hammers one class from many goroutines: no sliding second may
// hold more than the limit.
func TestRateLimitConcurrent(t *testing.T) {
	s := New(Config{
		MIMCApps:       []MIMCApp{{AppID: DefaultMIMCAppID, AppKey: DefaultMIMCAppKey, AppSecret: DefaultMIMCAppSecret}},
		Rates:          map[string]float64{ClassP2P: 200},
		RecordRequests: -1,
	})
	base, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body := `{` + creds + `,"fromAccount":"a","toAccount":"b","msg":"hi"}`
	stop := time.Now().Add(300 * time.Millisecond)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				resp, err := http.Post(base+"/api/push/p2p/", "application/json", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 && resp.StatusCode != 429 {
					t.Errorf("HTTP %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := s.Stats().Classes[ClassP2P]
	if st.WorstWindow > 210 || st.Calls != st.Tokens || st.RateLimited == 0 {
		t.Fatalf("p2p stats %+v: want a worst window of at most 210 and some 429s", st)
	}
}
