# seedgate container image.
#   docker build -t seedgate:dev .
# Stage 1 builds a release binary; its dependency layer is cached and only
# rebuilt when Cargo.toml or Cargo.lock change. Stage 2 is distroless
# (glibc + libgcc, no shell), running as the nonroot user (65532).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# Dependency layer: the real manifest and lockfile with dummy targets (every
# target Cargo.toml declares must exist for cargo to read it).
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/scan.rs \
 && echo 'fn main() {}' > benches/store_commit.rs \
 && cargo build --release --locked --bin seedgate \
 && rm -rf src benches
COPY src ./src
COPY benches ./benches
# Forget the dummy crate so cargo cannot take it as fresh (COPY keeps the
# sources' older mtimes), then build the real binary. The data directory is
# prepared here because the runtime image has no shell.
RUN rm -rf target/release/.fingerprint/seedgate-* target/release/deps/seedgate-* target/release/deps/libseedgate-* \
 && cargo build --release --locked --bin seedgate \
 && install -D -m 0755 target/release/seedgate /out/usr/local/bin/seedgate \
 && mkdir -p /out/var/lib/seedgate /out/etc/seedgate

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="seedgate" \
      org.opencontainers.image.description="Operator, telemetry router and durable OTLP exporter for a Gardener seed" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=builder /out/usr/local/bin/seedgate /usr/local/bin/seedgate
COPY --from=builder --chown=65532:65532 /out/var/lib/seedgate /var/lib/seedgate
COPY --from=builder /out/etc/seedgate /etc/seedgate
# Everything seedgate writes goes to the LMDB environment under the data
# directory: the root filesystem can be read-only. The embedded default's
# relative data_dir (./seedgate-data) lands on the volume too.
VOLUME ["/var/lib/seedgate"]
WORKDIR /var/lib/seedgate
USER 65532:65532
# 4317 OTLP/gRPC, 4318 OTLP/HTTP, 2021 admin (/metrics, /healthz, /readyz).
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz (deploy/single, deploy/ha).
EXPOSE 4317 4318 2021
ENTRYPOINT ["/usr/local/bin/seedgate"]
CMD ["run"]
