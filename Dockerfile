# syntax=docker/dockerfile:1
#
# rotator: a static binary on distroless, as non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t ghcr.io/rotator/rotator:TAG .
#   docker run --rm ghcr.io/rotator/rotator:TAG version
#
# Pin both base images by digest in your build (image@sha256:...), and let
# a bot (Renovate, Dependabot) move the digests.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
# Static (CGO off), reproducible (-trimpath, no VCS stamp), version stamped:
# `rotator version` prints VERSION.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/rotator ./cmd/rotator

# distroless/static: CA certificates, tzdata (policies.yaml time zones),
# /etc/passwd with nonroot (65532); no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="rotator" \
      org.opencontainers.image.description="Rotates secrets without breaking the applications that use them" \
      org.opencontainers.image.source="https://github.com/rotator/rotator" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/rotator /usr/local/bin/rotator
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/rotator"]
CMD ["daemon"]
