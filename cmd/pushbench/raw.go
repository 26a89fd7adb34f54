package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// raw measures the ceilings of this machine with plain nats.go and net/http, on a NATS
// server process of its own (as the scenarios have).
func (b *bench) raw(ctx context.Context) error {
	e, err := newEnv(ctx, b, "raw", envOptions{})
	if err != nil {
		return err
	}
	defer e.close()
	n := b.o.rawMsgs
	const stream, subject = "BENCH_RAW", "bench.raw"
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{subject}, Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy,
	}); err != nil {
		return err
	}

	// 1. Async publish.
	p, err := newPublisher(e.pub)
	if err != nil {
		return err
	}
	data := bytes.Repeat([]byte("x"), jobSize)
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := p.send(ctx, subject, data); err != nil {
			return err
		}
	}
	if err := p.complete(ctx); err != nil {
		return err
	}
	b.ceil.publish = float64(n) / time.Since(start).Seconds()
	b.add(row{Scenario: "raw", Metric: "JetStream async publish, 256 B, file storage", Value: fmtRate(b.ceil.publish), Num: b.ceil.publish, Unit: "msg/s"})

	// 2. Durable pull consume with explicit ack, sized as the worker's consumers.
	cons, err := e.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1024, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return err
	}
	var got atomic.Int64
	done := make(chan struct{})
	start = time.Now()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if got.Add(1) == int64(n) {
			close(done)
		}
	}, jetstream.PullMaxMessages(512))
	if err != nil {
		return err
	}
	select {
	case <-done:
	case <-ctx.Done():
		cc.Stop()
		return ctx.Err()
	case <-time.After(5 * time.Minute):
		cc.Stop()
		return fmt.Errorf("raw consume: %d of %d after 5m", got.Load(), n)
	}
	for { // until the server has processed every ack
		info, err := cons.Info(ctx)
		if err != nil {
			cc.Stop()
			return err
		}
		if info.NumAckPending == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.ceil.consume = float64(n) / time.Since(start).Seconds()
	cc.Stop()
	b.add(row{Scenario: "raw", Metric: "durable pull consume + explicit ack (MaxAckPending 1024)", Value: fmtRate(b.ceil.consume), Num: b.ceil.consume, Unit: "msg/s"})

	// 3. Synchronous publish round trips from 64 goroutines.
	var count atomic.Int64
	rtCtx, cancel := context.WithTimeout(ctx, b.o.rawDuration)
	var wg sync.WaitGroup
	start = time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rtCtx.Err() == nil {
				if _, err := e.js.Publish(rtCtx, subject, data); err == nil {
					count.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	b.ceil.syncRT = float64(count.Load()) / time.Since(start).Seconds()
	b.add(row{Scenario: "raw", Metric: "JetStream sync publish round trips, 64 goroutines", Value: fmtRate(b.ceil.syncRT), Num: b.ceil.syncRT, Unit: "msg/s",
		Ceiling: "a job's synchronous JetStream round trips each cost one of these"})

	// 4. HTTP POST on loopback.
	b.ceil.http, err = rawHTTP(ctx, b.o.rawDuration)
	if err != nil {
		return err
	}
	b.add(row{Scenario: "raw", Metric: "HTTP POST on loopback, Go client, 64 concurrent", Value: fmtRate(b.ceil.http), Num: b.ceil.http, Unit: "req/s"})
	return nil
}

// rawHTTP posts 256 B bodies to a trivial loopback server from 64 goroutines with
// keep-alive connections, for d.
func rawHTTP(ctx context.Context, d time.Duration) (float64, error) {
	answer := []byte(`{"code":200,"message":"success","data":{"packetId":"abcdefgh-0000001"}}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}))
	defer srv.Close()
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        128,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body := bytes.Repeat([]byte("x"), jobSize)
	var count, failed atomic.Int64
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rctx.Err() == nil {
				req, _ := http.NewRequestWithContext(rctx, http.MethodPost, srv.URL+"/api/push/p2p/", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	return float64(count.Load()) / time.Since(start).Seconds(), nil
}
