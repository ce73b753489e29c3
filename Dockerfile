# A runnable image of the sipdata service (PostgreSQL/CockroachDB and Redis are external).
# BASE is any image with Python 3.11 and its venv module: the public default, or a
# base made from Debian's packages where no registry is reachable (`make image`,
# docs/operations.md, "Images").
ARG BASE=python:3.11-slim
FROM ${BASE} AS build
WORKDIR /src
COPY . .
# Wheels put in build/wheels by `make image` (made on the host, which reaches the
# index) install without an index; otherwise pip fetches from PyPI.
RUN python3 -m venv /opt/sipdata \
 && if [ -d build/wheels ]; then \
        /opt/sipdata/bin/pip install --no-cache-dir --no-index --find-links build/wheels sipdata; \
    else \
        /opt/sipdata/bin/pip install --no-cache-dir .; \
    fi

FROM ${BASE}
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin sipdata
COPY --from=build /opt/sipdata /opt/sipdata
USER sipdata
# Listening on every interface needs the shared secret: `serve` refuses to start
# without SIPDATA_API_TOKEN (docs/operations.md, "Exposure"); pass it at run time
# (`-e SIPDATA_API_TOKEN=...`), never bake it into the image.
ENV PATH=/opt/sipdata/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SIPDATA_HTTP_HOST=0.0.0.0 \
    SIPDATA_HTTP_PORT=8480 \
    PYTHONUNBUFFERED=1
EXPOSE 8480
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8480/health', timeout=1)" || exit 1
ENTRYPOINT ["sipdata"]
CMD ["serve"]
