// Package natstest runs real NATS servers for tests: in-process, on a free loopback port,
// shut down when the test ends. Tests talk to them as the worker talks to production.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options is the server configuration Start begins with: loopback, a free port, no signal
// handlers, no logs.
func Options() *server.Options {
	return &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}
}

// JetStream enables JetStream, storing in dir (a new temporary directory when empty).
func JetStream(t testing.TB, dir string) func(*server.Options) {
	if dir == "" {
		dir = t.TempDir()
	}
	return func(o *server.Options) { o.JetStream, o.StoreDir = true, dir }
}

// Start starts a server with Options changed by opts and waits until it takes connections.
func Start(t testing.TB, opts ...func(*server.Options)) *server.Server {
	t.Helper()
	o := Options()
	for _, f := range opts {
		f(o)
	}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// Connect connects to s, closing the connection when the test ends.
func Connect(t testing.TB, s *server.Server, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
