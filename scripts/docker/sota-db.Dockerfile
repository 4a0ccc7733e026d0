# sota-db itself, built offline by scripts/docker/build-service-image.sh (run
# by build-images.sh) from a context it stages: the node binary the app's
# native modules were built for, and the app with its production node_modules.
# The base is sota-db's PgBouncer image: the same Debian trixie root with
# PostgreSQL 17, PgBouncer 1.24 (built with systemd socket activation, which the
# process runtime needs) and useradd/userdel (its per-database OS users).
ARG BASE=sota-db/pgbouncer:1.24-trixie
FROM ${BASE}

COPY node /usr/local/bin/node
COPY app/ /opt/sota-db/

# `sota` runs the service with the Docker runtime (--user sota plus the engine
# socket's group); root (the default) is for the process runtime, which gives
# each database an OS user of its own. 0711: those users traverse the data dir.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /var/lib/sota-db \
      --shell /usr/sbin/nologin sota \
 && install -d -o sota -g sota -m 0711 /var/lib/sota-db

WORKDIR /opt/sota-db
ENV NODE_ENV=production \
    SOTA_LISTEN=0.0.0.0:8080 \
    SOTA_DATA_DIR=/var/lib/sota-db
VOLUME /var/lib/sota-db
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT []
# npm start's command, without npm in between (signals reach node directly).
CMD ["node", "--max-semi-space-size=2", "--import", "tsx", "src/main.ts"]
