#!/usr/bin/env bash
# Creates the database named in the URL ($1) if it does not exist. Idempotent.
set -euo pipefail
url=$1
name=${url##*/}; name=${name%%\?*}
admin=${url%/*}/postgres
if [ "$(psql "$admin" -Atqc "select count(*) from pg_database where datname = '$name'")" = 0 ]; then
  psql "$admin" -qc "create database \"$name\""
fi
