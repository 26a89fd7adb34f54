package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pushworker/pushworker/upstream/sandbox"
)

const clusterHint = "set PUSH_E2E_CLUSTER=1 to run the clustered JetStream tests: PUSH_E2E_CLUSTER=1 go test -race -run Cluster ./e2e"

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(freeAddr(t))
	var port int
	fmt.Sscan(p, &port)
	return port
}

// startCluster starts size JetStream nodes clustered on loopback, each with a server name,
// a store and fixed client and route ports of its own (so that a node restarts where it
// was), and waits until JetStream answers.
func startCluster(t *testing.T, size int) []*natsNode {
	t.Helper()
	client, route := make([]int, size), make([]int, size)
	var routes []string
	for i := range size {
		client[i], route[i] = freePort(t), freePort(t)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", route[i]))
	}
	nodes := make([]*natsNode, size)
	for i := range size {
		n := &natsNode{t: t, opts: server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1", Port: client[i],
			JetStream: true, StoreDir: t.TempDir(),
			NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "e2e", Host: "127.0.0.1", Port: route[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}}
		n.start()
		t.Cleanup(n.stop)
		nodes[i] = n
	}
	_, js := connect(t, clusterURL(nodes))
	eventually(t, 60*time.Second, "JetStream of the cluster", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
	return nodes
}

func clusterURL(nodes []*natsNode) string {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.url()
	}
	return strings.Join(urls, ",")
}

// TestClusterNodeRestart: three clustered nodes, streams with 3 replicas, 2,000 jobs; the
// leader of the jobs stream is shut down mid-drain and restarted later. Every job gets
// exactly one non-duplicate result and none is lost. Upstream calls twice for one job are
// counted and reported; TestClusterNodeRestartUpstreamOnce fails on them.
func TestClusterNodeRestart(t *testing.T) {
	if os.Getenv("PUSH_E2E_CLUSTER") == "" {
		t.Skip(clusterHint)
	}
	clusterRestartScenario(t, false)
}

// TestClusterNodeRestartUpstreamOnce is TestClusterNodeRestart where the upstream must see
// each job once: no worker died, so §6 allows no second call.
func TestClusterNodeRestartUpstreamOnce(t *testing.T) {
	if os.Getenv("PUSH_E2E_CLUSTER") == "" {
		t.Skip(clusterHint)
	}
	clusterRestartScenario(t, true)
}

func clusterRestartScenario(t *testing.T, upstreamOnce bool) {
	nodes := startCluster(t, 3)
	sb := startSandbox(t, sandbox.DefaultConfig())
	sb.SetLatency(10 * time.Millisecond)
	_, js := connect(t, clusterURL(nodes))
	vars := map[string]string{
		"PUSH_NATS_URL":            clusterURL(nodes),
		"PUSH_STREAM_REPLICAS":     "3",
		"PUSH_MIMC_URL":            sb.URL(),
		"PUSH_NOTIFY_URL":          sb.URL(),
		"PUSH_MIMC_APP_ID":         sandbox.DefaultMIMCAppID,
		"PUSH_MIMC_APP_KEY":        sandbox.DefaultMIMCAppKey,
		"PUSH_MIMC_APP_SECRET":     sandbox.DefaultMIMCAppSecret,
		"PUSH_NOTIFY_APP_ID":       sandbox.DefaultNotifyAppID,
		"PUSH_NOTIFY_ACCESS_TOKEN": sandbox.DefaultNotifyToken,
		"PUSH_RATE_P2P":            "400",
		"PUSH_CONCURRENCY":         "32",
		"PUSH_SHUTDOWN_TIMEOUT":    "20s",
		"PUSH_LOG_LEVEL":           "info",
	}
	w := startWorker(t, vars)
	for _, s := range []string{"PUSH_JOBS", "PUSH_RESULTS", "PUSH_DLQ"} {
		if r := streamInfo(t, js, s).Config.Replicas; r != 3 {
			t.Fatalf("%s has %d replicas, want 3", s, r)
		}
	}

	const n = 2000
	ids := loadJobs(t, js, "cl", n)
	eventually(t, 60*time.Second, "400 upstream calls", func() bool { return sb.Stats().Requests >= 400 })
	leader := streamInfo(t, js, "PUSH_JOBS").Cluster.Leader
	var down *natsNode
	for _, nd := range nodes {
		if nd.opts.ServerName == leader {
			down = nd
		}
	}
	if down == nil {
		t.Fatalf("no node is the leader %q of PUSH_JOBS", leader)
	}
	down.stop()
	t.Logf("stopped %s, the leader of PUSH_JOBS, after %d upstream calls", leader, sb.Stats().Requests)
	// The other two carry on.
	at := sb.Stats().Requests
	eventually(t, 90*time.Second, "400 more upstream calls with a node down", func() bool { return sb.Stats().Requests >= at+400 })
	down.start()
	t.Logf("restarted %s after %d upstream calls", leader, sb.Stats().Requests)

	ta := waitAllResults(t, js, sb, ids, 240*time.Second)
	st := sb.Stats().Classes["p2p"]
	t.Logf("drained: %v; the upstream accepted %d calls for %d jobs, answered 429 %d times", ta, st.Calls, n, st.RateLimited)
	shown := 0
	for _, id := range ids {
		if ta.calls[id] > 1 && shown < 3 {
			shown++
			t.Logf("%s: %d upstream calls, results %v", id, ta.calls[id], ta.results[id])
		}
	}
	if w.exited() {
		t.Fatalf("the worker exited with code %d", w.exitCode())
	}
	maxUpstream := 2
	if upstreamOnce {
		maxUpstream = 1
	}
	checkExactlyOnce(t, ta, ids, maxUpstream)
	if ta.extra != 0 {
		t.Fatalf("%d results beyond one per job", ta.extra)
	}
	if upstreamOnce && st.Calls != n {
		t.Fatalf("the upstream accepted %d calls for %d jobs", st.Calls, n)
	}
	eventually(t, 30*time.Second, "PUSH_JOBS empty", func() bool { return streamInfo(t, js, "PUSH_JOBS").State.Msgs == 0 })
	w.stop(30 * time.Second)
}

// TestClusterSingleNodeRestart is TestNATSRestartUnderLoad with 2,000 jobs.
func TestClusterSingleNodeRestart(t *testing.T) {
	if os.Getenv("PUSH_E2E_CLUSTER") == "" {
		t.Skip(clusterHint)
	}
	natsRestartScenario(t, 2000, map[string]string{"PUSH_CONCURRENCY": "32", "PUSH_LOG_LEVEL": "info"}, 10*time.Millisecond)
}
