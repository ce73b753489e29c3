# Kamailio 5.6 from Debian with the sipdata routing script and the one module Debian
# does not package (http_async_client, built by kamailio/install.sh from Debian's
# source of the same version). Build from the repository root:
#   podman build -f deploy/kamailio.Dockerfile --build-arg BASE=... .
ARG BASE=debian:bookworm-slim
FROM ${BASE}
COPY kamailio/ /etc/kamailio/sipdata/
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gcc make libc6-dev pkg-config >/dev/null \
 && KAMAILIO_BUILD_DIR=/tmp/kamailio-src bash /etc/kamailio/sipdata/install.sh \
 && apt-get purge -y -qq gcc make libc6-dev pkg-config dpkg-dev >/dev/null \
 && apt-get autoremove -y -qq >/dev/null \
 && rm -rf /tmp/kamailio-src /var/lib/apt/lists/*
# The address, the nodes and the secret are given at run time with -A (the script's
# header lists the defines); see deploy/compose.yaml.
EXPOSE 5060/udp
ENTRYPOINT ["kamailio", "-DD", "-E", "-m", "512", "-x", "tlsf", "-f", "/etc/kamailio/sipdata/kamailio.cfg"]
