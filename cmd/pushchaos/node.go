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

// nodeCommand is the first argument with which pushchaos runs itself as one node of the
// NATS cluster, a process of its own so that it can be killed with SIGKILL. The server is
// the nats-server module pinned in go.mod: nothing needs to be installed.
const nodeCommand = "node"

// runNode serves one clustered JetStream node until SIGTERM; it prints "ready" on stdout
// once it accepts client connections.
func runNode(args []string) int {
	fs := flag.NewFlagSet(nodeCommand, flag.ContinueOnError)
	name := fs.String("name", "n1", "server name")
	port := fs.Int("port", 0, "client port")
	clusterPort := fs.Int("cluster-port", 0, "route port")
	routes := fs.String("routes", "", "comma-separated route URLs of every node")
	store := fs.String("store", "", "JetStream storage directory")
	mon := fs.Int("http-port", 0, "monitoring port (/healthz)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	opts := &server.Options{
		ServerName: *name,
		Host:       "127.0.0.1",
		Port:       *port,
		JetStream:  true,
		StoreDir:   *store,
		NoSigs:     true,
		Logtime:    true,
		Cluster:    server.ClusterOpts{Name: "pushchaos", Host: "127.0.0.1", Port: *clusterPort},
		Routes:     server.RoutesFromStr(*routes),
		HTTPHost:   "127.0.0.1",
		HTTPPort:   *mon,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nats node:", err)
		return 1
	}
	s.ConfigureLogger()
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		fmt.Fprintln(os.Stderr, "nats node: not ready after 30s")
		return 1
	}
	fmt.Println("ready")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return 0
}
