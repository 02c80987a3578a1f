# One image for every glucover service (ingest, pricing, dashboard, simulator, setup).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 GLUCOVER_HOME=/var/lib/glucover
RUN useradd --system --create-home --home-dir /var/lib/glucover glucover
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cli ./cli
COPY kernel ./kernel
COPY glucover ./glucover
COPY devices ./devices
COPY ingest ./ingest
COPY pricing ./pricing
COPY actuary ./actuary
COPY policies ./policies
COPY care ./care
COPY nightscout ./nightscout
COPY records ./records
COPY privacy ./privacy
COPY dashboard ./dashboard
COPY bench ./bench
RUN pip install --no-cache-dir .
USER glucover
EXPOSE 8501 9108 1337
ENTRYPOINT ["glucover"]
CMD ["doctor"]
