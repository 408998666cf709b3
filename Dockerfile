# syntax=docker/dockerfile:1
# Samia Edge — container image (deploy/README.md).
#   docker build -t samia-edge .
#   docker run --rm -p 8080:8080 -p 8443:8443 -e EDGE_API=api.internal:5000 samia-edge
# Stage 1 builds `edge` (Release) on Debian 12 with ./dev's build packages and installs it to
# /opt/edge; stage 2 is debian:12-slim with only the shared libraries the binary links, the
# installed tree, the built SPA (public/) in /srv/edge/public and deploy/container.toml as
# /etc/edge/edge.toml. tests/integration/test_packaging.py checks the runtime package list against
# `ldd edge` and the build list against ./dev.

FROM debian:12 AS build
ARG JOBS=2
ENV DEBIAN_FRONTEND=noninteractive CCACHE_DIR=/ccache
# ./dev's BUILD_PKGS, plus python3: tests/CMakeLists.txt looks for the interpreter at configure time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config ccache libuv1-dev node-llhttp libssl-dev libtomlplusplus-dev \
      nlohmann-json3-dev libspdlog-dev libgtest-dev libbrotli-dev libzstd-dev zlib1g-dev libhiredis-dev \
      libnghttp2-dev \
      python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Only the `edge` target is built (not the unit tests); install strips it. public/ moves to
# /srv/edge/public and share/edge/public becomes a link to it, so the installed conf/edge.toml
# (root = "../public") still finds it.
RUN --mount=type=cache,target=/ccache \
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build build -j"$JOBS" --target edge \
 && cmake --install build --prefix /opt/edge --strip \
 && mkdir -p /stage/srv/edge \
 && mv /opt/edge/share/edge/public /stage/srv/edge/public \
 && ln -s /srv/edge/public /opt/edge/share/edge/public \
 && /opt/edge/bin/edge --version

FROM debian:12-slim
LABEL org.opencontainers.image.title="samia-edge" \
      org.opencontainers.image.description="Samia Edge: static SPA, TLS, reverse proxy, cache and rate limits for SAMIA TAROT"
ENV DEBIAN_FRONTEND=noninteractive PATH=/opt/edge/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Runtime libraries of `ldd edge` by Debian package (libc6, libgcc-s1, libstdc++6 and zlib1g are
# already in the base image; listed so the list is the whole truth), and ca-certificates for
# HTTPS upstreams verified against the system store.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libc6 libgcc-s1 libstdc++6 zlib1g libuv1 libssl3 libbrotli1 libzstd1 libhiredis0.14 libnghttp2-14 \
      libtomlplusplus3 libspdlog1.10 libfmt9 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 edge \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin edge \
 && install -d -m 0755 /etc/edge \
 && install -d -o edge -g edge -m 0750 /etc/edge/certs /run/edge
COPY --from=build /opt/edge /opt/edge
COPY --from=build /stage/srv /srv
COPY deploy/container.toml /etc/edge/edge.toml

EXPOSE 8080 8443
# The public /health (503 while the api pool has no healthy server). No curl in the image: bash's
# /dev/tcp sends the request and the status line must hold " 200 ". EDGE_HEALTH_PORT only matters
# if the config's plain listener moves off 8080.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${EDGE_HEALTH_PORT:-8080} && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && IFS= read -r -t 2 line <&3 && [[ $line == *' 200 '* ]]"]
STOPSIGNAL SIGTERM
# edge:edge, numeric so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
ENTRYPOINT ["/opt/edge/bin/edge"]
CMD ["--config", "/etc/edge/edge.toml"]
