// Command pushctl is the producer and operator CLI of pushworker: it sends jobs (one, or
// NDJSON files with a progress bar), follows results and notify delivery stats, inspects
// and replays the dead-letter stream, and shows the state of streams and consumers.
//
// Run "pushctl help" for the commands. Exit codes: 0 success, 1 error, 2 usage error,
// 3 a waited-for job ended neither sent nor partial, 4 no result before the wait timed out.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
