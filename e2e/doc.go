// Package e2e holds black-box acceptance tests of the built pushworker binary.
//
// TestMain builds cmd/pushworker once; every test runs it as a child process with a clean
// environment (PATH, HOME and the PUSH_* variables the test sets) against a nats-server
// embedded in the test process and the sandbox upstream (upstream/sandbox), and checks what
// the contract (../shared/CONTRACT.md) promises:
//
//   - configuration: --version, a bad variable stops the worker naming it (config_test.go);
//   - delivery of every job type with the exact upstream body, result fields and headers,
//     metrics and health (delivery_test.go);
//   - streams, consumers and prefixes (streams_test.go);
//   - invalid jobs of every kind: rejected, DLQ entry, upstream untouched (invalid_test.go);
//   - retries, permanent rejections, configuration pauses (retry_test.go);
//   - deduplication, reply subjects, not_after (dedup_test.go);
//   - SIGTERM and kill -9 under load, NATS restarts (lifecycle_test.go);
//   - secrets in output, results and DLQ entries (secrets_test.go);
//   - rate limits (rate_test.go).
//
// Tests that found a bug in the product are skipped with a "BUG:" message that says what
// goes wrong; remove the t.Skip once it is fixed.
//
// Run them with
//
//	go test -race ./e2e
//
// The clustered JetStream tests (three nats-server nodes on loopback, the jobs stream's
// leader restarted mid-drain, 2,000 jobs) are slower and run only when asked for:
//
//	PUSH_E2E_CLUSTER=1 go test -race -run Cluster ./e2e
package e2e
