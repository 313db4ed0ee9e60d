# syntax=docker/dockerfile:1
#
# serin container image: one `serin` binary for both `serin operator` and
# `serin loadtester`.
#
#   docker build -t ghcr.io/serin-dev/serin:0.1.0 .                        # default, distroless
#   docker build --target tools -t ghcr.io/serin-dev/serin:0.1.0-tools .   # + bash, curl, watch
#
# NOTE: this file has not been built on the machine it was written on (no Docker
# engine there); .github/workflows/e2e.yaml builds it on every push.
#
# The default image is distroless (no shell, no package manager), runs as the
# non-root user 65532, and suits the operator and the load tester. The `tools`
# variant carries the same binary on a slim Debian with bash and curl, for load
# testers that run `type: bash` webhooks (such as the seeds' conformance tests
# `curl -sd 'test' http://backend-canary.prod:9898/token | grep token`) and for
# `kubectl exec` into the load tester to generate errors by hand.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# Only the workspace is needed; .dockerignore keeps target/ and Git out of the context.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# The cache mounts keep the registry and target dir between builds; the binary is
# copied out of the cached target dir because cache mounts are not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p serin --bin serin \
 && install -D -m 0755 target/release/serin /out/serin

# Variant with a shell for bash webhooks and manual testing.
FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim AS tools
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash ca-certificates curl procps \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /bin/bash nonroot
COPY --from=builder /out/serin /usr/local/bin/serin
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/serin"]
CMD ["loadtester", "--port", "8080"]

# Default image (last stage): glibc + libgcc from distroless/cc, nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/serin /usr/local/bin/serin
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/serin"]
CMD ["operator"]
