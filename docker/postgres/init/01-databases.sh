#!/usr/bin/env bash
# First start of the `db` container only (the postgres image runs this folder when the
# data directory is empty): one login role and one database per service. Each role
# owns its database and can connect to nothing else, so a service cannot read
# another service's data even with a wrong URL.
set -eo pipefail

create_service_database() {
    local database=$1 role=$2 password=$3
    # psql variables (:"x" identifiers, :'x' literals) quote the values, so a password
    # with quotes or backslashes cannot break out of the statement.
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        --set=database="$database" --set=role="$role" --set=password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"database" OWNER :"role";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
SQL
}

create_service_database books_db books "${BOOKS_DB_PASSWORD:?BOOKS_DB_PASSWORD is not set}"
create_service_database orders_db orders "${ORDERS_DB_PASSWORD:?ORDERS_DB_PASSWORD is not set}"

# Every role may connect to the maintenance databases by default; the service roles
# have no business there.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;
SQL
