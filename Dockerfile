# A runnable image of the sipdata service (PostgreSQL/CockroachDB and Redis are external).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md schema.sql ./
COPY sipdata ./sipdata
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 sipdata
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER sipdata
# Listening on every interface needs the shared secret: `serve` refuses to start
# without SIPDATA_API_TOKEN (docs/operations.md, "Exposure"); pass it at run time
# (`-e SIPDATA_API_TOKEN=...`), never bake it into the image.
ENV SIPDATA_HTTP_HOST=0.0.0.0 \
    SIPDATA_HTTP_PORT=8480 \
    PYTHONUNBUFFERED=1
EXPOSE 8480
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8480/health', timeout=1)" || exit 1
ENTRYPOINT ["sipdata"]
CMD ["serve"]
