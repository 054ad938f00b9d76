# The ledger binary: pure Go (the embedded store is modernc.org/sqlite, no cgo).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/ledger ./cmd/ledger && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ledger /ledger
# A named volume mounted here takes this folder's owner: the nonroot user.
COPY --from=build --chown=65532:65532 /out/data /data
# /data holds the read model (and the embedded store when --store is empty).
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["/ledger"]
CMD ["help"]
