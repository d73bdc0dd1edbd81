# One image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that a code change does not reinstall
# them. The project itself is not pip-installed: it runs from /app, where settings find
# templates/, static/ and locale/ beside the code.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps))" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

RUN useradd --create-home --uid 1000 scrm
COPY . .
RUN mkdir -p /app/var /app/staticfiles && chown -R scrm:scrm /app/var /app/staticfiles
USER scrm

EXPOSE 8000
CMD ["gunicorn", "scrm.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
