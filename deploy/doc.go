// Package deploy holds the Kubernetes deployment of pushworker: a kustomize
// base, the KEDA and monitoring (scraping, alerts, Grafana dashboard)
// components, the dev and prod overlays, and Helm values for the reference
// NATS JetStream cluster (see README.md).
//
// It has no Go API. Its tests render every overlay with kustomize's Go API
// and check each object strictly against its API type, offline; alert and
// dashboard queries are parsed with the PromQL parser and may name only the
// metrics that the worker registers.
package deploy
