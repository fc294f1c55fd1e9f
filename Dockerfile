# ark-apiserver container image.
#
# Build:  docker build -t ark-apiserver .
# The image holds the binary only: no configuration and no secrets. The database, TLS and
# everything else come from the environment (see `ark-apiserver serve --help`) or from the
# Helm chart in helm/ark-apiserver.

# ---- build ----
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# --locked: the image is built from exactly the versions in Cargo.lock.
RUN cargo build --release --locked -p ark-apiserver --bin ark-apiserver

# ---- run ----
# distroless/cc: glibc and CA certificates, no shell or package manager; the nonroot tag
# runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ark-apiserver /usr/local/bin/ark-apiserver
USER 65532:65532
EXPOSE 6443
ENTRYPOINT ["/usr/local/bin/ark-apiserver"]
CMD ["serve"]
