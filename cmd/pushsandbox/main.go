// Command pushsandbox runs the sandbox upstream (contract §8) on its own: an HTTP server
// that implements the MIMC push, MIMC topic and notify APIs in memory, for developing,
// testing and benchmarking pushworker. It prints its base URL on stdout and runs until
// SIGINT or SIGTERM.
//
// Every flag can also be set by the environment variable PUSHSANDBOX_<FLAG>, in upper case
// with "-" as "_" (--rate-p2p is PUSHSANDBOX_RATE_P2P); a flag given on the command line
// wins. Point the worker at it with PUSH_MIMC_URL and PUSH_NOTIFY_URL set to the printed
// URL and the credentials below. The control endpoints are under /_sandbox/ (stats, fault,
// reset, requests; see package sandbox).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/upstream/sandbox"
)

func main() {
	fs := flag.NewFlagSet("pushsandbox", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9090", "address to listen on")
	mimcID := fs.String("mimc-app-id", sandbox.DefaultMIMCAppID, "MIMC app id (decimal digits)")
	mimcKey := fs.String("mimc-app-key", sandbox.DefaultMIMCAppKey, "MIMC app key")
	mimcSecret := fs.String("mimc-app-secret", sandbox.DefaultMIMCAppSecret, "MIMC app secret")
	notifyID := fs.String("notify-app-id", sandbox.DefaultNotifyAppID, "notify app id")
	notifyToken := fs.String("notify-token", sandbox.DefaultNotifyToken, "notify access token")
	rateP2P := fs.Float64("rate-p2p", sandbox.DefaultRate, "p2p class limit in tokens/s per app (0 = unlimited)")
	rateP2T := fs.Float64("rate-p2t", sandbox.DefaultRate, "p2t class limit in tokens/s per app (0 = unlimited)")
	rateUCS := fs.Float64("rate-ucs", sandbox.DefaultRate, "ucs class limit in tokens/s per app (0 = unlimited)")
	rateNotify := fs.Float64("rate-notify", 0, "notify calls/s per app (0 = unlimited)")
	tolerance := fs.Float64("rate-tolerance", sandbox.DefaultRateTolerance, "allowed excess over the rate in any sliding 1 s window (0.05 = 5 %)")
	latency := fs.Duration("latency", 0, "delay of every answer")
	statsStep := fs.Duration("stats-step", sandbox.DefaultStatsStep, "how often notify task statistics advance")
	record := fs.Int("record", sandbox.DefaultRecordRequests, "requests kept for /_sandbox/requests (-1 = none)")
	logFormat := fs.String("log-format", "console", "log format: console or json")
	_ = fs.Parse(os.Args[1:])
	if err := applyEnv(fs); err != nil {
		fmt.Fprintln(os.Stderr, "pushsandbox:", err)
		os.Exit(2)
	}
	log := newLogger(*logFormat)

	if *tolerance == 0 {
		*tolerance = -1 // Config reads 0 as the default
	}
	sb := sandbox.New(sandbox.Config{
		MIMCApps:   []sandbox.MIMCApp{{AppID: *mimcID, AppKey: *mimcKey, AppSecret: *mimcSecret}},
		NotifyApps: []sandbox.NotifyApp{{AppID: *notifyID, AccessToken: *notifyToken}},
		Rates: map[string]float64{
			sandbox.ClassP2P: *rateP2P, sandbox.ClassP2T: *rateP2T, sandbox.ClassUCS: *rateUCS, sandbox.ClassNotify: *rateNotify,
		},
		RateTolerance:  *tolerance,
		StatsStep:      *statsStep,
		RecordRequests: *record,
	})
	sb.SetLatency(*latency)
	url, err := sb.Start(*listen)
	if err != nil {
		log.Error().Err(err).Str("listen", *listen).Msg("cannot listen")
		os.Exit(1)
	}
	fmt.Println(url)
	log.Info().Str("url", url).Str("mimc_app_id", *mimcID).Str("notify_app_id", *notifyID).
		Float64("rate_p2p", *rateP2P).Float64("rate_p2t", *rateP2T).Float64("rate_ucs", *rateUCS).Float64("rate_notify", *rateNotify).
		Dur("latency", *latency).Msg("sandbox upstream running")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if err := sb.Close(); err != nil {
		log.Warn().Err(err).Msg("closing the listener")
	}
	st := sb.Stats()
	log.Info().Int64("requests", st.Requests).Msg("sandbox upstream stopped")
}

// applyEnv sets every flag not given on the command line from PUSHSANDBOX_<FLAG>.
func applyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		name := "PUSHSANDBOX_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("bad value of %s: %v", name, e)
			}
		}
	})
	return err
}

func newLogger(format string) zerolog.Logger {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	var l zerolog.Logger
	if format == "json" {
		l = zerolog.New(os.Stderr)
	} else {
		l = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339})
	}
	return l.With().Timestamp().Logger()
}
