# syntax=docker/dockerfile:1
#
# pushworker image: static binaries on distroless, running as non-root.
#   docker build -t ghcr.io/pushworker/pushworker:0.1.0 --build-arg VERSION=0.1.0 .
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ...
# (the Go toolchain cross-compiles; nothing runs under emulation).

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 \
    GOFLAGS=-buildvcs=false \
    GOTOOLCHAIN=local

# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
# Set by BuildKit from --platform; empty (= the builder's own) otherwise.
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath \
      -ldflags "-s -w -X github.com/pushworker/pushworker/service.Version=${VERSION}" \
      -o /out/ ./cmd/pushworker ./cmd/pushctl

# distroless/static: no shell, no package manager, but CA certificates (for
# the HTTPS upstreams) and tzdata. Pin by digest in production.
FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/pushworker /out/pushctl /usr/local/bin/
# 65532 = "nonroot" of distroless; the Deployment's runAsUser matches it.
USER 65532:65532
# PUSH_ADMIN_ADDR: /metrics, /healthz, /readyz (set it to 0.0.0.0:8080 in a
# container; the default 127.0.0.1:8080 is unreachable from outside).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pushworker"]
