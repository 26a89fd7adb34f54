// Package service assembles a running pushworker: NATS (external or embedded), the sandbox
// upstream in sandbox mode, streams, the worker, the rate budget coordinator, the admin
// HTTP server, and their orderly shutdown.
package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/api"
	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/dashboard"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/limiter"
	"github.com/pushworker/pushworker/notifystats"
	"github.com/pushworker/pushworker/tracing"
	"github.com/pushworker/pushworker/upstream"
	"github.com/pushworker/pushworker/upstream/sandbox"
	"github.com/pushworker/pushworker/worker"
)

// Version is set at build time.
var Version = "dev"

// Run runs pushworker until ctx ends, then shuts down within PUSH_SHUTDOWN_TIMEOUT.
// With c.Sandbox it also runs the sandbox upstream and points the worker at it. A stop
// asked for while it is still starting is a clean stop, not an error.
func Run(ctx context.Context, c config.Config, log zerolog.Logger) error {
	err := run(ctx, c, log)
	if err != nil && ctx.Err() != nil {
		log.Info().Err(err).Msg("stopped while starting")
		return nil
	}
	return err
}

func run(ctx context.Context, c config.Config, log zerolog.Logger) error {
	replica := replicaID()
	log = log.With().Str("replica", replica).Logger()

	tp, err := tracing.Setup(ctx, tracing.Options{Version: Version, InstanceID: replica,
		OnError: func(err error) { log.Warn().Err(err).Msg("tracing") }})
	if err != nil {
		return err
	}
	if tp.Enabled {
		log.Info().Str("protocol", tp.Protocol).Str("endpoint", tp.Endpoint).Msg("tracing: exporting spans over OTLP")
	}
	defer func() {
		// After every job has finished: the spans still buffered go out now.
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(shutCtx); err != nil {
			log.Warn().Err(err).Msg("tracing: could not export the last spans")
		}
	}()

	var sb *sandbox.Server
	if c.Sandbox {
		if sb, c, err = startSandbox(c); err != nil {
			return err
		}
		defer sb.Close()
		log.Info().Str("url", c.MIMCURL).Msg("sandbox upstream running (MIMC and notify)")
	}

	natsURL := c.NATSURL
	var ns *server.Server
	if natsURL == "" {
		if err := checkDataDir(c.DataDir); err != nil {
			return err
		}
		var err error
		if ns, err = broker.StartEmbedded(c); err != nil {
			return err
		}
		natsURL = ns.ClientURL()
		log.Info().Str("url", natsURL).Str("data_dir", c.DataDir).Msg("embedded NATS server with JetStream running")
	}
	nc, err := broker.Connect(c, natsURL, "pushworker "+replica,
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn().Err(err).Msg("disconnected from NATS")
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info().Msg("reconnected to NATS") }))
	if err != nil {
		shutdownServer(ns)
		return err
	}
	defer shutdownServer(ns)
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	setup, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	err = broker.EnsureStreams(setup, js, c)
	cancelSetup()
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	metrics, notifyMetrics, gauges := registerMetrics(reg)

	lim := limiter.New(limiter.Options{
		Rate:   func(app, class string) float64 { return c.Apps[app].Rate(class) },
		Logger: log,
	})
	bus := &breakerBus{nc: nc, subject: broker.NamesFrom(c).ControlSubject("breaker"), replica: replica, log: log}
	breakers := upstream.NewBreakers(upstream.BreakerSettings{OnChange: func(g upstream.GateState) {
		ev := log.Info()
		if g.Open || g.Paused {
			ev = log.Error()
		}
		ev.Str("app", g.App).Str("upstream", g.Upstream).Str("host", g.Host).Bool("open", g.Open).Bool("paused", g.Paused).
			Str("detail", g.Detail).Msg("upstream gate changed")
		gauges.gate(g)
		bus.publish(g)
	}})
	bus.breakers, bus.hold = breakers, 3*breakers.OpenFor()
	busSub, err := bus.subscribe()
	if err != nil {
		return err
	}
	defer func() { _ = busSub.Unsubscribe() }()
	client := &upstream.Client{HTTP: upstream.NewHTTPClient(c.HTTPTimeout, c.Concurrency), MIMCURL: c.MIMCURL, NotifyURL: c.NotifyURL, Scrub: config.NewScrubber(c.Secrets())}

	poller, err := notifystats.New(ctx, notifystats.Options{Config: c, JS: js, Client: client, Breakers: breakers, Logger: log, Metrics: notifyMetrics, ReplicaID: replica})
	if err != nil {
		return err
	}
	wk, err := worker.New(ctx, worker.Options{
		Config: c, Logger: log, JS: js, Sender: client, Limiter: lim, Breakers: breakers, Metrics: metrics,
		AckWait: c.AckWait, TracerProvider: tp.TracerProvider(),
		OnAccepted: func(ctx context.Context, d *jobs.Decoded, res *jobs.Result) error {
			if d.Spec == nil || d.Spec.Upstream != jobs.UpstreamNotify {
				return nil
			}
			ids := res.TaskIDs
			if res.TaskID != nil {
				ids = []int64{*res.TaskID}
			}
			if len(ids) == 0 {
				return nil
			}
			return poller.Track(ctx, res.App, res.RequestID, ids)
		},
	})
	if err != nil {
		return err
	}
	coord, err := limiter.NewCoordinator(js, lim, limiter.CoordinatorOptions{
		Bucket: broker.NamesFrom(c).LimiterBucket(), ReplicaID: replica, Replicas: c.StreamReplicas, Logger: log,
	})
	if err != nil {
		return err
	}

	ctl := wk.Controls()
	apiSvc, err := api.Start(nc, api.Options{Config: c, Client: client, Breakers: breakers, Logger: log, Version: Version, Controls: &ctl})
	if err != nil {
		return fmt.Errorf("request/reply API: %w", err)
	}
	defer func() { _ = apiSvc.Stop() }()

	var ui *dashboard.Dashboard
	if c.UI {
		// A connection of its own: while a page is open, every result flows to the dashboard.
		uiNC, err := broker.Connect(c, natsURL, "pushworker-ui "+replica)
		if err != nil {
			return err
		}
		defer uiNC.Close()
		if ui, err = dashboard.New(dashboard.Options{Config: c, NC: uiNC, Breakers: breakers, ReplicaID: replica, Version: Version, Logger: log}); err != nil {
			return err
		}
	}
	health := &health{nc: nc, js: js, c: c, breakers: breakers, worker: wk}
	admin, err := startAdmin(c.AdminAddr, c.PProf, reg, health, ui)
	if err != nil {
		return err
	}
	if ui != nil {
		log.Info().Str("addr", admin.Addr).Str("dashboard", dashboardURL(admin.Addr)).Bool("admin_token", !c.UIAdminToken.IsZero()).
			Msg("admin HTTP server: /metrics /healthz /readyz and the dashboard")
	} else {
		log.Info().Str("addr", admin.Addr).Msg("admin HTTP server: /metrics /healthz /readyz")
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var coordErr error
	wg.Add(4)
	go func() { defer wg.Done(); health.run(runCtx) }()
	go func() { defer wg.Done(); gauges.sample(runCtx, js, c, lim, coord, ui) }()
	if ui != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ui.Run(runCtx); err != nil {
				log.Warn().Err(err).Msg("dashboard stopped")
			}
		}()
	}
	go func() {
		defer wg.Done()
		if err := poller.Run(runCtx); err != nil {
			log.Warn().Err(err).Msg("notify stats poller stopped")
		}
	}()
	go func() { defer wg.Done(); coordErr = coord.Run(runCtx) }()
	if c.Sandbox {
		logFirstJob(log, c, natsURL, ui, admin.Addr)
	}
	err = wk.Run(ctx)
	stop()
	wg.Wait()
	shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = admin.Shutdown(shutCtx)
	cancel()
	if err == nil && coordErr != nil && !errors.Is(coordErr, context.Canceled) {
		log.Warn().Err(coordErr).Msg("rate budget coordinator stopped with an error")
	}
	return err
}

// RegisterMetrics registers with reg every collector that the admin server's /metrics
// serves: the Go runtime and process collectors, the worker's, the notify stats poller's
// and the service's own. Run does the same for its registry; the deploy tests use it to
// check that alerts and dashboards name only metrics that exist.
func RegisterMetrics(reg prometheus.Registerer) { registerMetrics(reg) }

func registerMetrics(reg prometheus.Registerer) (*worker.Metrics, *notifystats.Metrics, *gauges) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return worker.NewMetrics(reg), notifystats.NewMetrics(reg), newGauges(reg)
}

// checkDataDir makes sure the embedded server can store in dir, creating it if need be, so
// that an unusable PUSH_DATA_DIR stops the start at once and named (the server itself would
// only fail to become ready).
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return &config.Error{Var: "PUSH_DATA_DIR", Msg: err.Error(), Err: err}
	}
	f, err := os.CreateTemp(dir, ".pushworker-check-*")
	if err != nil {
		return &config.Error{Var: "PUSH_DATA_DIR", Msg: "not writable: " + err.Error(), Err: err}
	}
	_ = f.Close()
	_ = os.Remove(f.Name())
	return nil
}

func shutdownServer(ns *server.Server) {
	if ns != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}

// startSandbox starts the sandbox upstream and points the default app at it.
func startSandbox(c config.Config) (*sandbox.Server, config.Config, error) {
	sb := sandbox.New(sandbox.DefaultConfig())
	url, err := sb.Start("127.0.0.1:0")
	if err != nil {
		return nil, c, fmt.Errorf("sandbox upstream: %w", err)
	}
	c.MIMCURL, c.NotifyURL = url, url
	def := c.Apps[config.DefaultApp]
	def.MIMC = &config.MIMCCreds{AppID: sandbox.DefaultMIMCAppID, AppKey: config.NewSecret(sandbox.DefaultMIMCAppKey), AppSecret: config.NewSecret(sandbox.DefaultMIMCAppSecret)}
	def.Notify = &config.NotifyCreds{AppID: sandbox.DefaultNotifyAppID, AccessToken: config.NewSecret(sandbox.DefaultNotifyToken)}
	apps := make(map[string]config.App, len(c.Apps))
	for k, v := range c.Apps {
		apps[k] = v
	}
	apps[config.DefaultApp] = def
	c.Apps = apps
	return sb, c, nil
}

func logFirstJob(log zerolog.Logger, c config.Config, natsURL string, ui *dashboard.Dashboard, adminAddr string) {
	subj := c.SubjectPrefix
	msg := "sandbox ready. Send a first job and watch its result:\n" +
		"  nats --server " + natsURL + " sub '" + subj + ".results.>' &\n" +
		"  nats --server " + natsURL + " pub " + subj + ".jobs.p2p '{\"request_id\":\"hello-1\",\"payload\":{\"fromAccount\":\"shop\",\"toAccount\":\"u42\",\"msg\":\"hello\"}}'\n" +
		"or: go run ./cmd/pushctl send p2p --from shop --to u42 --msg hello --wait"
	ev := log.Info()
	if ui != nil {
		msg += "\nand watch it on the dashboard: " + dashboardURL(adminAddr)
		ev = ev.Str("dashboard", dashboardURL(adminAddr))
	}
	ev.Msg(msg)
}

// dashboardURL is the dashboard's address on the admin server: a wildcard listen address
// is shown as the loopback one.
func dashboardURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + "/ui/"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/ui/"
}

func replicaID() string {
	h, _ := os.Hostname()
	h = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, h)
	if len(h) > 40 {
		h = h[:40]
	}
	id := nuid.Next()
	return h + "-" + id[len(id)-8:]
}

// startAdmin serves /metrics, /healthz and /readyz, and the dashboard on /ui/ (with / sent
// there) when ui is not nil.
func startAdmin(addr string, pprofOn bool, reg *prometheus.Registry, h *health, ui *dashboard.Dashboard) (*http.Server, error) {
	mux := http.NewServeMux()
	if ui != nil {
		mux.Handle("/ui/", ui.Handler())
		mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", h.healthz)
	mux.HandleFunc("/readyz", h.readyz)
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/heap", pprof.Index)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &config.Error{Var: "PUSH_ADMIN_ADDR", Msg: err.Error()}
	}
	srv := &http.Server{Addr: ln.Addr().String(), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}
