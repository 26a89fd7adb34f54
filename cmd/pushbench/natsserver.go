package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsServerCommand is the hidden first argument with which pushbench runs itself as the
// NATS server of a scenario, in a process of its own so that its CPU time and memory are
// measured apart from the publisher's.
const natsServerCommand = "__nats-server"

// runNATSServer serves NATS with JetStream until SIGTERM; it prints the client URL on
// stdout once it accepts connections.
func runNATSServer(args []string) {
	fs := flag.NewFlagSet(natsServerCommand, flag.ExitOnError)
	port := fs.Int("port", 0, "client port")
	store := fs.String("store", "", "JetStream storage directory")
	prof := fs.Int("prof-port", 0, "pprof HTTP port (0: none)")
	mon := fs.Int("http-port", 0, "monitoring HTTP port (/varz)")
	_ = fs.Parse(args)
	s, err := server.NewServer(&server.Options{
		ServerName: "pushbench",
		Host:       "127.0.0.1",
		Port:       *port,
		JetStream:  true,
		StoreDir:   *store,
		MaxPayload: 8 << 20,
		NoSigs:     true,
		NoLog:      true,
		ProfPort:   *prof,
		HTTPHost:   "127.0.0.1",
		HTTPPort:   *mon,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "nats server:", err)
		os.Exit(1)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		fmt.Fprintln(os.Stderr, "nats server: not ready after 15s")
		os.Exit(1)
	}
	fmt.Println(s.ClientURL())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
}
