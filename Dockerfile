# syntax=docker/dockerfile:1

# authgate container image.
#
# Build:  docker build --build-arg VERSION=$(git describe --tags --always) \
#           --build-arg REVISION=$(git rev-parse HEAD) \
#           --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) -t authgate:dev .
#
# The binary is built exactly as scripts/static-check.sh builds it
# (CGO_ENABLED=0, -trimpath, -s -w, version stamped through -X), so
# `make static-check` proves on any CI host that the result has no libc
# dependency and runs on the distroless static base.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
ARG REVISION=unknown
WORKDIR /src
ENV CGO_ENABLED=0 \
    GOFLAGS=-buildvcs=false
# Dependencies first, so a source-only change reuses this layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" -o /out/authgate .

# distroless/static: no shell, no libc, no package manager; it ships only
# CA certificates, tzdata, /etc/passwd with the nonroot user (65532) and /tmp.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="authgate" \
      org.opencontainers.image.description="Authentication and authorization gateway (sidecar reverse proxy)" \
      org.opencontainers.image.source="https://github.com/authgate/authgate" \
      org.opencontainers.image.url="https://github.com/authgate/authgate" \
      org.opencontainers.image.documentation="https://github.com/authgate/authgate/tree/main/helm/authgate" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build --chown=0:0 --chmod=0555 /out/authgate /authgate
# Numeric ids, so Kubernetes runAsNonRoot can verify them without /etc/passwd.
USER 65532:65532
# 8080: gateway listener; 9090: admin listener (/healthz, /readyz, /metrics).
EXPOSE 8080 9090
# Nothing is written to the root filesystem: the image runs with
# readOnlyRootFilesystem=true; configuration arrives as mounted files.
ENTRYPOINT ["/authgate"]
CMD ["serve", "--config", "/etc/authgate/config/config.yaml"]
