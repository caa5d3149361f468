# The operator image: built with the Rust toolchain, run from a distroless base as a
# non-root user. `docker build -t decision-gate .`
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY core ./core
COPY src ./src
RUN cargo build --release --locked --bin decision-gate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/decision-gate /usr/local/bin/decision-gate
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/decision-gate"]
CMD ["run"]
