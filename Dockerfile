# cmbsd in a container: a static binary (CGO_ENABLED=0; the embedded store is
# pure Go) on an empty base image, running as an unprivileged user with its
# store in the /data volume.
#
#   docker build -t cmbs .
#   docker run -p 8090:8090 -v cmbs-data:/data -v ./users:/etc/cmbs/users:ro \
#     -e CMBS_USERS=/etc/cmbs/users cmbs
#
# The image listens on 0.0.0.0:8090, which cmbsd refuses to do without
# --users (CMBS_USERS) unless --insecure (CMBS_INSECURE=true) is given: the
# image does not choose for you (README, "Packaging").
#
# The build command below is also what cmd/cmbsd's TestReleaseBinary runs,
# read from this file, so that the release binary CI checks is this one.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/cmbsd ./cmd/cmbsd
# The runtime image has no shell: prepare its directories here. /tmp is
# where process executions get their run directories (--run-dir).
RUN mkdir -p /out/data /out/tmp && chown 65532:65532 /out/data && chmod 1777 /out/tmp

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/cmbsd /usr/local/bin/cmbsd
COPY --from=build /out/data /data
COPY --from=build /out/tmp /tmp
USER 65532:65532
VOLUME /data
ENV CMBS_LISTEN=0.0.0.0:8090 \
    CMBS_STORE=sqlite:/data/cmbs.db
EXPOSE 8090
ENTRYPOINT ["/usr/local/bin/cmbsd"]
