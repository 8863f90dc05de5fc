# xtrader container image: built with Bun from the same build.ts as CI, run on distroless as a non-root user.
#
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse --short=12 HEAD) \
#     -t xtrader:0.1.0-$(git rev-parse --short=12 HEAD) .
#
# Every RUN below is a command CI runs too (.ci/run: npm ci; npm test: bun build.ts), so a green CI means
# this build works. The runtime image has no shell: configure it with environment variables
# (docs/deployment.md, systemd/xtrader.env.example lists them all).

FROM node:20.20.2-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Installs Bun itself too (the `bun` package in devDependencies), at the version the lockfile pins.
RUN npm ci --no-audit --no-fund
COPY . .
# There is no .git in the build context: the commit comes from the REVISION build argument.
ARG REVISION=unknown
ENV XTRADER_COMMIT=${REVISION}
RUN npx bun build.ts --quiet
# The Parquet volume's mount point, owned by the runtime user (distroless has no shell to mkdir/chown).
WORKDIR /out/data

FROM gcr.io/distroless/base-debian12:nonroot
ARG VERSION=0.0.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="xtrader" \
      org.opencontainers.image.description="Long-running crypto market-data collector: exchange WebSocket feeds to Parquet or QuestDB" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="UNLICENSED" \
      org.opencontainers.image.base.name="gcr.io/distroless/base-debian12:nonroot"
COPY --from=build /src/dist/xtrader /usr/local/bin/xtrader
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
# UV_THREADPOOL_SIZE: as the systemd unit sets it (see there and docs/deployment.md).
ENV OUTPUT_DIRECTORY=/data \
    METRICS_ADDR=0.0.0.0:9464 \
    UV_THREADPOOL_SIZE=16
VOLUME ["/data"]
EXPOSE 9464
STOPSIGNAL SIGTERM
# No shell or curl here: the binary asks its own /healthz (METRICS_ADDR), exit 0 or 1 with one line. /healthz
# answers from the first moment (before any connection), so no start period is needed.
HEALTHCHECK --interval=15s --timeout=5s --retries=3 CMD ["/usr/local/bin/xtrader", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/xtrader"]
