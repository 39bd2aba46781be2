#!/usr/bin/env bash
# Runs once, as the postgres superuser, when the data volume is first initialised
# (the official image's /docker-entrypoint-initdb.d). Creates walcast's login role with
# the password of the compose secret walcast_db_password:
# - LOGIN REPLICATION: walcast opens a logical replication connection;
# - CREATE on the database: `walcast setup` creates walcast's own schema (walcast.*).
# The demo schema it captures is created owned by this role (02-demo.sql), so the
# role may create and alter the publication itself (publication_mode = "managed").
set -euo pipefail

walcast_password=$(cat /run/secrets/walcast_db_password)

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     --set=walcast_password="$walcast_password" <<'SQL'
CREATE ROLE walcast LOGIN REPLICATION PASSWORD :'walcast_password';
SELECT format('GRANT CREATE, CONNECT ON DATABASE %I TO walcast', current_database()) \gexec
SQL
