# cfpurge container image.
#
#   docker build -t cfpurge .
#   docker run -d --name cfpurge -p 127.0.0.1:9470:9470 \
#     -v "$PWD/cfpurge.toml:/etc/cfpurge/cfpurge.toml:ro" \
#     -v cfpurge-ledger:/var/lib/cfpurge \
#     -e AWS_REGION=us-east-1 -e CFPURGE__HTTP__ENQUEUE_TOKEN=... cfpurge
#
# The build stage caches the dependencies in a layer of their own; the
# runtime is distroless (glibc, CA certificates, no shell) as user 65532.

FROM rust:1.95-bookworm AS build
WORKDIR /src

# Dependencies: the real manifest and lock file with a dummy crate, so this
# layer is rebuilt only when Cargo.toml or Cargo.lock change. The bench
# stubs exist because the manifest names them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/planner.rs \
    && echo 'fn main() {}' > benches/decode.rs \
    && cargo build --release --locked --bin cfpurge \
    && rm -rf src

# The crate itself. COPY keeps the files' times, which may be older than the
# dummy build: touch the roots so that cargo rebuilds the crate. Then a smoke
# test, and the empty ledger folder for the runtime stage (distroless has no
# shell to make it there).
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin cfpurge \
    && ./target/release/cfpurge --version \
    && mkdir -p /staging/ledger

FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=build /src/target/release/cfpurge /usr/local/bin/cfpurge
# A starting point only: mount your configuration over it, or override its
# keys with CFPURGE__SECTION__KEY variables. Its queue URL and distribution
# id are placeholders.
COPY config/cfpurge.example.toml /etc/cfpurge/cfpurge.toml
# The budget ledger must outlive the container: keep it on a volume. The
# folder is created owned by the runtime user so a fresh volume is writable.
COPY --from=build --chown=65532:65532 /staging/ledger /var/lib/cfpurge
VOLUME /var/lib/cfpurge

# Listen on every interface so the published port reaches the daemon. That
# exposes POST /v1/purge, which spends money: set CFPURGE__HTTP__ENQUEUE_TOKEN
# (or http.enqueue_token in the mounted file) and publish the port only where
# it is needed.
ENV CFPURGE__HTTP__LISTEN=0.0.0.0:9470 \
    CFPURGE__BUDGET__LEDGER_PATH=/var/lib/cfpurge/ledger.json

USER 65532:65532
EXPOSE 9470
# cfpurge drains on SIGTERM within [shutdown] grace_seconds (20 s by
# default): give `docker stop` more than that, e.g. `docker stop -t 30`.
STOPSIGNAL SIGTERM
# `cfpurge status` exits non-zero when the daemon does not answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/cfpurge", "status", "--url", "http://127.0.0.1:9470"]

ENTRYPOINT ["/usr/local/bin/cfpurge"]
CMD ["run", "-c", "/etc/cfpurge/cfpurge.toml"]
