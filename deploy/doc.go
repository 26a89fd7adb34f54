// Package deploy holds the Kubernetes deployment of pushworker: a kustomize
// base, the KEDA and Prometheus components, the dev and prod overlays, and
// Helm values for the reference NATS JetStream cluster (see README.md).
//
// It has no Go API. Its tests render every overlay with kustomize's Go API
// and check each object strictly against its API type, offline.
package deploy
