package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/upstream/sandbox"
)

// TestNATSAuthentication runs the worker against servers that require a user and password
// or a token (PUSH_NATS_USER/PUSH_NATS_PASSWORD, PUSH_NATS_TOKEN), and checks that a wrong
// password stops it with an error that names NATS and never prints the password.
func TestNATSAuthentication(t *testing.T) {
	t.Parallel()
	const password, token = "nats-S3CRET-pw-77", "nats-S3CRET-token-88"
	cases := []struct {
		name string
		opt  func(*server.Options)
		vars map[string]string
		conn nats.Option
	}{
		{"user and password", func(o *server.Options) { o.Username, o.Password = "pusher", password },
			map[string]string{"PUSH_NATS_USER": "pusher", "PUSH_NATS_PASSWORD": password}, nats.UserInfo("pusher", password)},
		{"token", func(o *server.Options) { o.Authorization = token },
			map[string]string{"PUSH_NATS_TOKEN": token}, nats.Token(token)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := startNATS(t, c.opt)
			nc, err := nats.Connect(n.url(), c.conn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			js, _ := jetstream.New(nc)
			e := &env{t: t, nats: n, sb: startSandbox(t, sandbox.DefaultConfig()), nc: nc, js: js}
			e.vars = map[string]string{
				"PUSH_NATS_URL": n.url(), "PUSH_MIMC_URL": e.sb.URL(),
				"PUSH_MIMC_APP_ID": sandbox.DefaultMIMCAppID, "PUSH_MIMC_APP_KEY": sandbox.DefaultMIMCAppKey,
				"PUSH_MIMC_APP_SECRET": sandbox.DefaultMIMCAppSecret, "PUSH_LOG_LEVEL": "debug",
				"PUSH_DATA_DIR": t.TempDir(), "PUSH_SHUTDOWN_TIMEOUT": "5s",
			}
			for k, v := range c.vars {
				e.vars[k] = v
			}
			w := e.start()
			res := e.results()
			e.publish("push.jobs.p2p", p2pJob("auth-1"))
			if r := res.waitResult("auth-1", 15*time.Second); r.Status != "sent" {
				t.Fatalf("result %v", r)
			}
			for _, s := range []string{password, token} {
				if strings.Contains(w.output(), s) {
					t.Fatalf("the worker printed a NATS secret")
				}
			}
			// A wrong secret: the worker stops with an error naming NATS, without the secret.
			bad := map[string]string{}
			for k, v := range e.vars {
				bad[k] = v
			}
			bad["PUSH_NATS_PASSWORD"], bad["PUSH_NATS_TOKEN"] = "wrong-S3CRET-1", "wrong-S3CRET-2"
			if c.vars["PUSH_NATS_TOKEN"] == "" {
				delete(bad, "PUSH_NATS_TOKEN")
			} else {
				delete(bad, "PUSH_NATS_PASSWORD")
			}
			bw := launchWorker(t, bad)
			if !bw.waitExit(20 * time.Second) {
				t.Fatal("the worker kept running with a wrong NATS secret")
			}
			out := bw.output()
			if bw.exitCode() == 0 || !strings.Contains(out, "NATS") || strings.Contains(out, "wrong-S3CRET") {
				t.Fatalf("exit %d, output: %s", bw.exitCode(), out)
			}
		})
	}
}
