package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// Exit codes.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitNotSent  = 3 // send --wait: the result's status is neither sent nor partial
	exitNoResult = 4 // send --wait: no result before the timeout
)

// command is one entry of the command table. run gets the arguments after the command
// name and returns the exit code.
type command struct {
	name    string
	args    string // usage after the name
	summary string
	run     func(ctx context.Context, a *app, args []string) int
}

// commands is pushctl's command table, in the order "pushctl help" lists them.
//
// New commands are added here, each in its own file. The request/reply API of contract §9
// has "topic" (push.api.topic.*), "certificate" (push.api.certificate) and "task"
// (push.api.task.detail), in topic.go.
var commands = []command{
	{name: "send", args: "<type> [flags] | --file jobs.ndjson [--type T]", summary: "publish one job, or every job of an NDJSON file", run: runSend},
	{name: "results", args: "[--follow] [--request-id ID] [--status S] [--type T] [--since D]", summary: "print results from the results stream", run: runResults},
	{name: "stats", args: "[--follow] [--request-id ID] [--since D]", summary: "print notify delivery stats", run: runStats},
	{name: "dlq", args: "list|show|replay ...", summary: "inspect and replay the dead-letter stream", run: runDLQ},
	{name: "status", args: "", summary: "show streams, consumers, pending jobs, replicas and service instances", run: runStatus},
	{name: "pause", args: "<type|class> [--app A] [--for D]", summary: "pause a job type or rate class (jobs stay in the stream)", run: runPause},
	{name: "resume", args: "<type|class> [--app A]", summary: "end a pause", run: runResume},
	{name: "cancel", args: "--request-id-prefix P [--for D]", summary: "cancel the jobs not yet sent whose request id starts with P", run: runCancel},
	{name: "topic", args: "create|update|delete|members|list|info|online|forbid [flags]", summary: "manage MIMC topics over push.api.topic.* (contract §9)", run: runTopic},
	{name: "certificate", args: certificateCall.args, summary: "show a notify push certificate over push.api.certificate (secrets hidden unless --json)", run: runCertificate},
	{name: "task", args: "detail --task ID[,ID...]", summary: "show notify task delivery stats per channel over push.api.task.detail", run: runTask},
}

func lookupCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// app is one invocation of pushctl: its global settings and output streams.
type app struct {
	g      globals
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// globals are the flags every command accepts, before or after the command name.
type globals struct {
	server       string
	creds        string
	nkey         string
	user         string
	password     string
	token        string
	tlsCA        string
	tlsCert      string
	tlsKey       string
	prefix       string
	streamPrefix string
	json         bool
}

// defaultGlobals reads the defaults of the global flags from the PUSH_* variables (§7).
func defaultGlobals(getenv func(string) string) globals {
	or := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	return globals{
		server:       or("PUSH_NATS_URL", "nats://127.0.0.1:4222"),
		creds:        getenv("PUSH_NATS_CREDS"),
		nkey:         getenv("PUSH_NATS_NKEY"),
		user:         getenv("PUSH_NATS_USER"),
		password:     getenv("PUSH_NATS_PASSWORD"),
		token:        getenv("PUSH_NATS_TOKEN"),
		tlsCA:        getenv("PUSH_NATS_TLS_CA"),
		tlsCert:      getenv("PUSH_NATS_TLS_CERT"),
		tlsKey:       getenv("PUSH_NATS_TLS_KEY"),
		prefix:       or("PUSH_SUBJECT_PREFIX", "push"),
		streamPrefix: or("PUSH_STREAM_PREFIX", "PUSH"),
	}
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.server, "server", g.server, "NATS server URL(s), comma separated (env PUSH_NATS_URL)")
	fs.StringVar(&g.creds, "creds", g.creds, "NATS credentials file (env PUSH_NATS_CREDS)")
	fs.StringVar(&g.nkey, "nkey", g.nkey, "NATS nkey seed (env PUSH_NATS_NKEY)")
	fs.StringVar(&g.user, "user", g.user, "NATS user (env PUSH_NATS_USER)")
	fs.StringVar(&g.password, "password", g.password, "NATS password (env PUSH_NATS_PASSWORD)")
	fs.StringVar(&g.token, "token", g.token, "NATS token (env PUSH_NATS_TOKEN)")
	fs.StringVar(&g.tlsCA, "tls-ca", g.tlsCA, "CA certificate file (env PUSH_NATS_TLS_CA)")
	fs.StringVar(&g.tlsCert, "tls-cert", g.tlsCert, "client certificate file (env PUSH_NATS_TLS_CERT)")
	fs.StringVar(&g.tlsKey, "tls-key", g.tlsKey, "client key file (env PUSH_NATS_TLS_KEY)")
	fs.StringVar(&g.prefix, "prefix", g.prefix, "subject prefix (env PUSH_SUBJECT_PREFIX)")
	fs.StringVar(&g.streamPrefix, "stream-prefix", g.streamPrefix, "stream name prefix (env PUSH_STREAM_PREFIX)")
	fs.BoolVar(&g.json, "json", g.json, "machine-readable JSON output")
}

// run is pushctl with its arguments (without the program name); it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	a.g = defaultGlobals(a.getenv)

	fs := flag.NewFlagSet("pushctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	a.g.register(fs)
	fs.Usage = func() { a.usage(fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 {
		a.usage(fs)
		return exitUsage
	}
	name := rest[0]
	if name == "help" {
		if len(rest) > 1 {
			if c := lookupCommand(rest[1]); c != nil {
				return c.run(ctx, a, []string{"-h"})
			}
		}
		a.usage(fs)
		return exitOK
	}
	c := lookupCommand(name)
	if c == nil {
		fmt.Fprintf(stderr, "pushctl: unknown command %q (run pushctl help)\n", name)
		return exitUsage
	}
	return c.run(ctx, a, rest[1:])
}

func (a *app) usage(fs *flag.FlagSet) {
	w := a.stderr
	fmt.Fprintln(w, "pushctl: producer and operator CLI of pushworker")
	fmt.Fprintln(w, "\nUsage: pushctl [global flags] <command> [flags]")
	fmt.Fprintln(w, "\nCommands:")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nGlobal flags (also accepted after the command):")
	fs.PrintDefaults()
	fmt.Fprintln(w, "\nRun pushctl help <command> for a command's flags.")
}

// newFlagSet returns the flag set of a command, with the global flags registered too.
func (a *app) newFlagSet(name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet("pushctl "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "Usage: pushctl %s %s\n\nFlags:\n", name, args)
		fs.PrintDefaults()
	}
	a.g.register(fs)
	return fs
}

// parseFlags parses flags and positional arguments in any order ("send p2p --to u1" and
// "send --to u1 p2p" both work). It returns the positional arguments and, when parsing
// ended the command (an error or -h), the exit code to return.
func parseFlags(fs *flag.FlagSet, args []string) (positional []string, code int, done bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, true
			}
			return nil, exitUsage, true
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, 0, false
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// fail prints a one-line error and returns exitError.
func (a *app) fail(err error) int {
	fmt.Fprintln(a.stderr, "pushctl:", err)
	return exitError
}

// usageErr prints a usage error and returns exitUsage.
func (a *app) usageErr(format string, args ...any) int {
	fmt.Fprintf(a.stderr, "pushctl: "+format+"\n", args...)
	return exitUsage
}

// listFlag is a repeatable flag; with split, each value is also split at commas.
type listFlag struct {
	values []string
	split  bool
}

func (l *listFlag) String() string { return strings.Join(l.values, ",") }

func (l *listFlag) Set(s string) error {
	if !l.split {
		l.values = append(l.values, s)
		return nil
	}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			l.values = append(l.values, v)
		}
	}
	return nil
}

// optBool is a boolean flag that knows whether it was given.
type optBool struct {
	set, v bool
}

func (b *optBool) IsBoolFlag() bool { return true }
func (b *optBool) String() string {
	if b == nil || !b.set {
		return ""
	}
	return fmt.Sprint(b.v)
}
func (b *optBool) Set(s string) error {
	switch strings.ToLower(s) {
	case "true", "1", "yes":
		b.v = true
	case "false", "0", "no":
		b.v = false
	default:
		return fmt.Errorf("want true or false")
	}
	b.set = true
	return nil
}
