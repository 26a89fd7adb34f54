package sandbox

import (
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Default credentials of the sandbox: DefaultConfig uses them, and `pushworker --sandbox`
// configures its default app with them.
const (
	// DefaultMIMCAppID is the app id of the MIMC app of DefaultConfig.
	DefaultMIMCAppID = "2882303761517"
	// DefaultMIMCAppKey is the app key of the MIMC app of DefaultConfig.
	DefaultMIMCAppKey = "sandbox-key"
	// DefaultMIMCAppSecret is the app secret of the MIMC app of DefaultConfig.
	DefaultMIMCAppSecret = "sandbox-secret"
	// DefaultNotifyAppID is the app id of the notify app of DefaultConfig.
	DefaultNotifyAppID = "sandbox-notify-app"
	// DefaultNotifyToken is the access token of the notify app of DefaultConfig.
	DefaultNotifyToken = "sandbox-token"
)

// DefaultRate is the rate, in tokens per second, of each MIMC class in DefaultConfig (the
// limit of mimc-push-v2).
const DefaultRate = 1000

// Rate classes, the keys of Config.Rates and Stats.Classes.
const (
	// ClassP2P is the class of /api/push/p2p/ (weight 1) and /api/push/p2p/more (weight
	// len(toAccounts)).
	ClassP2P = "p2p"
	// ClassP2T is the class of /api/push/p2t/ (weight 1) and /api/push/p2t/more (weight
	// len(topicIds)).
	ClassP2T = "p2t"
	// ClassUCS is the class of /api/push/ucs/singleMsgPush (weight 1), multiMsgPush
	// (weight len(messages)) and multiTopicPush (weight len(topicIds)).
	ClassUCS = "ucs"
	// ClassNotify is the class of /push/notify (weight 1), per notify app; it is not
	// limited unless Config.Rates sets it.
	ClassNotify = "notify"
)

// Classes lists every rate class in the order Stats reports them.
var Classes = []string{ClassP2P, ClassP2T, ClassUCS, ClassNotify}

const (
	classP2P = iota
	classP2T
	classUCS
	classNotify
	numClasses
)

// Defaults of the Config fields.
const (
	// DefaultRateTolerance is the default Config.RateTolerance: 5 % over the rate.
	DefaultRateTolerance = 0.05
	// DefaultStatsStep is the default Config.StatsStep.
	DefaultStatsStep = time.Second
	// DefaultRecordRequests is the default Config.RecordRequests.
	DefaultRecordRequests = 10000
)

// maxBodyBytes bounds the request bodies the sandbox reads.
const maxBodyBytes = 8 << 20

// MIMCApp is one MIMC app the sandbox knows. AppID is decimal digits, as the push API
// receives it as a JSON number.
type MIMCApp struct{ AppID, AppKey, AppSecret string }

// NotifyApp is one notify app the sandbox knows.
type NotifyApp struct{ AppID, AccessToken string }

// Config configures a Server. The zero value is a server that knows no app.
type Config struct {
	MIMCApps   []MIMCApp
	NotifyApps []NotifyApp
	// Rates holds the limit per rate class ("p2p", "p2t", "ucs", and optionally "notify")
	// in tokens per second, per app. Missing or 0 means unlimited.
	Rates map[string]float64
	// RateTolerance is the excess over the rate allowed in any sliding one-second window;
	// 0 means DefaultRateTolerance, a negative value means none.
	RateTolerance float64
	// StatsStep is how often notify task statistics advance one step; 0 means
	// DefaultStatsStep.
	StatsStep time.Duration
	// RecordRequests is how many of the last requests Requests keeps; 0 means
	// DefaultRecordRequests, -1 keeps none.
	RecordRequests int
}

// DefaultConfig returns the configuration of `pushworker --sandbox` and cmd/pushsandbox:
// one MIMC app and one notify app with the Default credentials and DefaultRate for each
// MIMC class.
func DefaultConfig() Config {
	return Config{
		MIMCApps:   []MIMCApp{{AppID: DefaultMIMCAppID, AppKey: DefaultMIMCAppKey, AppSecret: DefaultMIMCAppSecret}},
		NotifyApps: []NotifyApp{{AppID: DefaultNotifyAppID, AccessToken: DefaultNotifyToken}},
		Rates:      map[string]float64{ClassP2P: DefaultRate, ClassP2T: DefaultRate, ClassUCS: DefaultRate},
	}
}

// Server is the sandbox upstream. It is an http.Handler; Start also serves it on a
// listener of its own. All methods are safe for concurrent use.
type Server struct {
	cfg        Config
	mimcApps   map[string]*mimcApp
	notifyApps map[string]*notifyApp
	routes     map[string]*route
	other      atomic.Int64 // requests to unknown paths
	requests   atomic.Int64
	injected   atomic.Int64
	epoch      time.Time

	latency     atomic.Int64 // nanoseconds
	outage      atomic.Bool
	failMu      sync.Mutex
	failRules   []FailRule
	failPending atomic.Int64

	rec *recorder // nil when recording is off

	packetPrefix string
	packetSeq    atomic.Int64

	topics topicStore
	notify notifyStore

	closeOnce sync.Once
	closed    chan struct{}

	srvMu sync.Mutex
	srv   *http.Server
	done  chan struct{}
	url   string
}

type mimcApp struct {
	MIMCApp
	windows [3]*window // p2p, p2t, ucs
}

type notifyApp struct {
	NotifyApp
	window *window
}

// New returns a server configured by cfg. Apps listed twice keep the last entry.
func New(cfg Config) *Server {
	if cfg.RateTolerance == 0 {
		cfg.RateTolerance = DefaultRateTolerance
	} else if cfg.RateTolerance < 0 {
		cfg.RateTolerance = 0
	}
	if cfg.StatsStep <= 0 {
		cfg.StatsStep = DefaultStatsStep
	}
	if cfg.RecordRequests == 0 {
		cfg.RecordRequests = DefaultRecordRequests
	}
	s := &Server{
		cfg:          cfg,
		mimcApps:     make(map[string]*mimcApp, len(cfg.MIMCApps)),
		notifyApps:   make(map[string]*notifyApp, len(cfg.NotifyApps)),
		epoch:        time.Now(),
		packetPrefix: randomString(8),
		closed:       make(chan struct{}),
	}
	for _, a := range cfg.MIMCApps {
		m := &mimcApp{MIMCApp: a}
		for c := range m.windows {
			m.windows[c] = newWindow(cfg.Rates[Classes[c]], cfg.RateTolerance)
		}
		s.mimcApps[a.AppID] = m
	}
	for _, a := range cfg.NotifyApps {
		s.notifyApps[a.AppID] = &notifyApp{NotifyApp: a, window: newWindow(cfg.Rates[ClassNotify], cfg.RateTolerance)}
	}
	if cfg.RecordRequests > 0 {
		s.rec = newRecorder(cfg.RecordRequests)
	}
	s.topics.init()
	s.notify.init()
	s.routes = s.buildRoutes()
	return s
}

// handlerFunc handles one request whose body has been read.
type handlerFunc func(w http.ResponseWriter, r *http.Request, body []byte)

// route is one upstream path: its handlers by method and its request count.
type route struct {
	path     string
	handlers map[string]handlerFunc
	count    atomic.Int64
}

func (s *Server) buildRoutes() map[string]*route {
	rs := map[string]*route{}
	add := func(method, path string, h handlerFunc) {
		r := rs[path]
		if r == nil {
			r = &route{path: path, handlers: map[string]handlerFunc{}}
			rs[path] = r
		}
		r.handlers[method] = h
	}
	for i := range pushEndpoints {
		e := &pushEndpoints[i]
		add(http.MethodPost, e.path, func(w http.ResponseWriter, r *http.Request, body []byte) { s.handlePush(w, e, body) })
	}
	add(http.MethodPost, "/api/uctopic", s.topicCreate)
	add(http.MethodDelete, "/api/uctopic", s.topicDelete)
	add(http.MethodPost, "/api/uctopic/update", s.topicUpdate)
	add(http.MethodGet, "/api/uctopic/userlist", s.topicUserList)
	add(http.MethodGet, "/api/uctopic/topics", s.topicTopics)
	add(http.MethodGet, "/api/uctopic/topic", s.topicInfo)
	add(http.MethodGet, "/api/uctopic/onlineinfo", s.topicOnline)
	add(http.MethodPost, "/api/uctopic/forbidsendmsg", s.topicForbid)
	add(http.MethodPost, "/push/notify", s.notifyPush)
	add(http.MethodPost, "/push/task/detail", s.notifyTaskDetail)
	add(http.MethodGet, "/push/certificate", s.notifyCertificate)
	return rs
}

// lookup finds the route of path, with or without a trailing slash.
func (s *Server) lookup(path string) *route {
	if r := s.routes[path]; r != nil {
		return r
	}
	if strings.HasSuffix(path, "/") {
		return s.routes[strings.TrimSuffix(path, "/")]
	}
	return s.routes[path+"/"]
}

// ServeHTTP answers one request: the control endpoints under /_sandbox/, or an upstream
// endpoint after recording the request and applying the injected faults.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if strings.HasPrefix(path, controlPrefix) {
		s.serveControl(w, r)
		return
	}
	s.requests.Add(1)
	rt := s.lookup(path)
	if rt != nil {
		rt.count.Add(1)
	} else {
		s.other.Add(1)
	}
	body, err := readBody(r)
	if s.rec != nil {
		s.rec.add(r, body)
	}
	if !s.applyFaults(w, r) {
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, http.StatusBadRequest, "reading the request body: "+err.Error())
		return
	}
	if rt == nil {
		writeError(w, http.StatusNotFound, http.StatusNotFound, "no such endpoint: "+path)
		return
	}
	h := rt.handlers[r.Method]
	if h == nil {
		allow := make([]string, 0, len(rt.handlers))
		for m := range rt.handlers {
			allow = append(allow, m)
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+rt.path)
		return
	}
	if r.Method == http.MethodPost && !isJSON(r.Header.Get("Content-Type")) {
		writeError(w, http.StatusUnsupportedMediaType, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	h(w, r, body)
}

func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	n := r.ContentLength
	if n > maxBodyBytes {
		return nil, errors.New("body larger than 8 MiB")
	}
	if n > 0 {
		buf := make([]byte, n)
		_, err := io.ReadFull(r.Body, buf)
		return buf, err
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err == nil && len(b) > maxBodyBytes {
		return nil, errors.New("body larger than 8 MiB")
	}
	return b, err
}

func isJSON(ct string) bool {
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves in the background
// until Close. It returns the base URL, such as "http://127.0.0.1:9090".
func (s *Server) Start(addr string) (baseURL string, err error) {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.srv != nil {
		return "", errors.New("sandbox: already started")
	}
	select {
	case <-s.closed:
		return "", errors.New("sandbox: closed")
	default:
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	s.srv, s.done = srv, done
	s.url = "http://" + ln.Addr().String()
	return s.url, nil
}

// URL returns the base URL Start listens on, or "" before Start.
func (s *Server) URL() string {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	return s.url
}

// Close stops the listener Start opened, closes its connections and waits for it to end.
// Requests waiting for injected latency return at once. Close is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	s.srvMu.Lock()
	srv, done := s.srv, s.done
	s.srvMu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Close()
	<-done
	return err
}

// Answer writing. Bodies are built by hand on the hot path and with encoding/json elsewhere.

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json;charset=UTF-8"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError answers {"code":code,"message":msg,"data":null} with HTTP status.
func writeError(w http.ResponseWriter, status, code int, msg string) {
	b := make([]byte, 0, 48+len(msg))
	b = append(b, `{"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, msg)
	b = append(b, `,"data":null}`...)
	writeRaw(w, status, b)
}

// writeData answers HTTP 200 {"code":200,"message":msg,"data":data}; a nil msg is null.
func writeData(w http.ResponseWriter, msg *string, data any) {
	b, err := json.Marshal(struct {
		Code    int     `json:"code"`
		Message *string `json:"message"`
		Data    any     `json:"data"`
	}{200, msg, data})
	if err != nil {
		writeError(w, http.StatusInternalServerError, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	writeRaw(w, http.StatusOK, b)
}

var success = "success"

// writeSuccess answers the MIMC success envelope with data.
func writeSuccess(w http.ResponseWriter, data any) { writeData(w, &success, data) }

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func randomString(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[rand.IntN(len(alnum))]
	}
	return string(b)
}

// appendPacketID appends a new packet id: the server's random string, "-", and an
// increasing number of at least 7 digits.
func (s *Server) appendPacketID(b []byte) []byte {
	n := s.packetSeq.Add(1)
	b = append(b, s.packetPrefix...)
	b = append(b, '-')
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], n, 10)
	for i := len(d); i < 7; i++ {
		b = append(b, '0')
	}
	return append(b, d...)
}

func (s *Server) now() int64 { return int64(time.Since(s.epoch)) }
