package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pushworker/pushworker/internal/localhost"
	"github.com/pushworker/pushworker/upstream/sandbox"
)

// node is one NATS server of the cluster: a child process that keeps its ports and its
// store across restarts.
type node struct {
	name              string
	port, clusterPort int
	monPort           int // /healthz
	store, log        string
	mu                sync.Mutex
	p                 *proc
}

func (n *node) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// cluster is the NATS cluster: pushchaos itself, re-executed in node mode, per node.
type cluster struct {
	self   string
	nodes  []*node
	routes string
}

func newCluster(self, dir string, size int) (*cluster, error) {
	c := &cluster{self: self}
	var routes []string
	for i := 1; i <= size; i++ {
		p, err := localhost.FreePort()
		if err != nil {
			return nil, err
		}
		cp, err := localhost.FreePort()
		if err != nil {
			return nil, err
		}
		mp, err := localhost.FreePort()
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("n%d", i)
		c.nodes = append(c.nodes, &node{name: name, port: p, clusterPort: cp, monPort: mp,
			store: filepath.Join(dir, name), log: filepath.Join(dir, name+".log")})
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(cp))
	}
	c.routes = strings.Join(routes, ",")
	return c, nil
}

// url lists every node's client URL.
func (c *cluster) url() string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = n.url()
	}
	return strings.Join(urls, ",")
}

// start starts a node and waits until it accepts connections.
func (c *cluster) start(ctx context.Context, n *node) error {
	ready := make(chan string, 1)
	p, err := startProc("nats "+n.name, c.self, []string{nodeCommand,
		"-name", n.name, "-port", strconv.Itoa(n.port), "-cluster-port", strconv.Itoa(n.clusterPort),
		"-routes", c.routes, "-store", n.store, "-http-port", strconv.Itoa(n.monPort)}, childEnv(), n.log, ready)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.p = p
	n.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-p.done:
		return fmt.Errorf("nats node %s exited at start (%v); see %s", n.name, p.err, n.log)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("nats node %s not ready after 30s; see %s", n.name, n.log)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// current reports whether the node's /healthz says its JetStream is current with the
// cluster (it answers 503 "JetStream is not current with the meta leader" while a
// restarted node catches up).
func (n *node) current() bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(n.monPort) + "/healthz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// kill ends a node with SIGKILL.
func (n *node) kill() {
	n.mu.Lock()
	p := n.p
	n.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// up reports whether the node's process runs.
func (n *node) up() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.p != nil && !n.p.exited()
}

// stop ends every node (SIGTERM, then SIGKILL).
func (c *cluster) stop() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		n.mu.Lock()
		p := n.p
		n.mu.Unlock()
		if p != nil && !p.exited() {
			wg.Add(1)
			go func() { defer wg.Done(); p.term(10 * time.Second) }()
		}
	}
	wg.Wait()
}

// workerSlot is one of the worker replicas; each run of it is a new pushworker process
// with the same environment and admin address.
type workerSlot struct {
	id       int
	admin    string
	env      []string
	bin      string
	log      string
	mu       sync.Mutex
	p        *proc
	runs     int
	expected bool // the soak stops the running process (kill, SIGTERM, teardown)
	// onExit runs when a process exits by itself (as a crash-looping pod would be
	// restarted, the soak restarts it).
	onExit func(s *workerSlot, p *proc)
}

func (s *workerSlot) name() string { return "worker-" + strconv.Itoa(s.id) }

// workerSettings are the variables every worker gets.
type workerSettings struct {
	natsURL         string
	rate, notify    float64
	shutdownTimeout time.Duration
	ackWait         time.Duration
	logLevel        string
}

func newWorkerSlot(id int, bin, dir, upstreamURL string, ws workerSettings) (*workerSlot, error) {
	port, err := localhost.FreePort()
	if err != nil {
		return nil, err
	}
	s := &workerSlot{id: id, bin: bin, admin: "127.0.0.1:" + strconv.Itoa(port), log: filepath.Join(dir, fmt.Sprintf("worker-%d.log", id))}
	r := strconv.FormatFloat(ws.rate, 'f', -1, 64)
	s.env = childEnv(
		"PUSH_NATS_URL="+ws.natsURL,
		"PUSH_STREAM_REPLICAS=3",
		"PUSH_MIMC_URL="+upstreamURL,
		"PUSH_NOTIFY_URL="+upstreamURL,
		"PUSH_MIMC_APP_ID="+sandbox.DefaultMIMCAppID,
		"PUSH_MIMC_APP_KEY="+sandbox.DefaultMIMCAppKey,
		"PUSH_MIMC_APP_SECRET="+sandbox.DefaultMIMCAppSecret,
		"PUSH_NOTIFY_APP_ID="+sandbox.DefaultNotifyAppID,
		"PUSH_NOTIFY_ACCESS_TOKEN="+sandbox.DefaultNotifyToken,
		"PUSH_RATE_P2P="+r, "PUSH_RATE_P2T="+r, "PUSH_RATE_UCS="+r,
		"PUSH_RATE_NOTIFY="+strconv.FormatFloat(ws.notify, 'f', -1, 64),
		"PUSH_ADMIN_ADDR="+s.admin,
		"PUSH_LOG_LEVEL="+ws.logLevel,
		"PUSH_HTTP_TIMEOUT=5s",
		"PUSH_RETRY_INITIAL=200ms",
		"PUSH_RETRY_MAX=5s",
		"PUSH_ACK_WAIT="+ws.ackWait.String(),
		"PUSH_SHUTDOWN_TIMEOUT="+ws.shutdownTimeout.String(),
		"PUSH_NOTIFY_STATS_INTERVAL=5s",
		"PUSH_DATA_DIR="+filepath.Join(dir, fmt.Sprintf("worker-%d-data", id)),
	)
	return s, nil
}

// start runs a new process of the slot, unless one runs.
func (s *workerSlot) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil && !s.p.exited() {
		return nil
	}
	s.runs++
	p, err := startProc(fmt.Sprintf("%s run %d", s.name(), s.runs), s.bin, nil, s.env, s.log, nil)
	if err != nil {
		return err
	}
	s.p, s.expected = p, false
	go func() {
		<-p.done
		s.mu.Lock()
		ours, onExit := s.expected || s.p != p, s.onExit
		s.mu.Unlock()
		if !ours && onExit != nil {
			onExit(s, p)
		}
	}()
	return nil
}

// expect marks the running process as one the soak is about to stop.
func (s *workerSlot) expect() {
	s.mu.Lock()
	s.expected = true
	s.mu.Unlock()
}

func (s *workerSlot) proc() *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

func (s *workerSlot) up() bool {
	p := s.proc()
	return p != nil && !p.exited()
}

// ready reports whether /readyz answers 200.
func (s *workerSlot) ready() bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + s.admin + "/readyz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitReady waits until the slot's process answers /readyz with 200.
func (s *workerSlot) waitReady(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for !s.ready() {
		p := s.proc()
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited (%v); see %s", s.name(), p.err, s.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s; see %s", s.name(), d, s.log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}
