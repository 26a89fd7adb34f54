// Command pushworker takes push and notification jobs off NATS JetStream and delivers them
// to the MIMC and notify upstream APIs. It is configured by PUSH_* environment variables;
// --sandbox runs it with an embedded NATS server and the sandbox upstream.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/service"
)

func main() {
	sandbox := flag.Bool("sandbox", false, "run with an embedded NATS server and the sandbox upstream (same as PUSH_SANDBOX=true)")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "pushworker: unexpected argument %q (pushworker is configured by PUSH_* environment variables)\n", flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}
	if *version {
		fmt.Println("pushworker", service.Version)
		return
	}
	c, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushworker: configuration error:", err)
		os.Exit(2)
	}
	c.Sandbox = c.Sandbox || *sandbox
	tuneGC()
	log := newLogger(c)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := service.Run(ctx, c, log); err != nil {
		log.Error().Err(err).Msg("pushworker stopped")
		if log.GetLevel() > zerolog.ErrorLevel || zerolog.GlobalLevel() > zerolog.ErrorLevel {
			// The logger did not print it (PUSH_LOG_LEVEL=fatal, panic or disabled): a
			// failure must never exit silently.
			fmt.Fprintln(os.Stderr, "pushworker:", err)
		}
		os.Exit(1)
	}
}

// tuneGC trades a little memory for CPU: the live heap of a worker is a few MiB, so the
// default GOGC=100 collects far too often (the benchmark measured ~35 % of CPU in GC). A
// soft memory limit keeps RSS bounded. GOGC and GOMEMLIMIT in the environment win.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(48 << 20)
	}
}

func newLogger(c config.Config) zerolog.Logger {
	level, _ := zerolog.ParseLevel(strings.ToLower(c.LogLevel))
	zerolog.TimeFieldFormat = time.RFC3339Nano
	var l zerolog.Logger
	if c.LogFormat == "console" {
		l = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339})
	} else {
		l = zerolog.New(os.Stderr)
	}
	return l.Level(level).With().Timestamp().Logger()
}
