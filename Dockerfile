# syntax=docker/dockerfile:1
# Cairn validator image: a release build of cairnd and cairn on a small Debian runtime, run as
# a non-root user, the node home a volume.
#
#   docker build -t cairn:local .
#   docker run -v "$PWD/net/validator-0:/var/lib/cairn" -p 27600:27600 cairn:local
#
# The home is one `cairnd testnet --hosts ... --api-bind 0.0.0.0` validator directory; its
# files must be readable by the container's user (deploy/up.sh runs it as the host user).
# deploy/compose.yaml runs four of them.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin cairnd --bin cairn \
 && strip target/release/cairnd target/release/cairn

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/cairn --shell /usr/sbin/nologin cairn \
 && mkdir -p /var/lib/cairn && chown cairn:cairn /var/lib/cairn && chmod 0700 /var/lib/cairn
COPY --from=build /src/target/release/cairnd /src/target/release/cairn /usr/local/bin/
USER cairn
WORKDIR /var/lib/cairn
VOLUME ["/var/lib/cairn"]
# p2p, API (as `cairnd testnet --hosts HOST:26600` writes them)
EXPOSE 26600 27600
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:27600/v1/health || exit 1
ENTRYPOINT ["cairnd"]
CMD ["run", "--home", "/var/lib/cairn", "--log-format", "json"]
