# Sourced by bench/sql.sh and bench/peers.sh: the benchmark table, built
# once and kept while it has the requested number of rows (REBUILD=1 forces
# a rebuild). Needs PSQL (an array: the psql command line) set by the caller.
ensure_bench_sql_table() {
  local TABLE=$1 ROWS=$2 have
  have=-1
  if [ "$("${PSQL[@]}" -Atc "SELECT to_regclass('$TABLE') IS NOT NULL")" = t ]; then
    have=$("${PSQL[@]}" -Atc "SELECT count(*) FROM $TABLE")
  fi
  if [ "${REBUILD:-0}" = 1 ] || [ "$have" != "$ROWS" ]; then
    echo "creating $TABLE with $ROWS rows" >&2
    "${PSQL[@]}" <<SQL
DROP TABLE IF EXISTS $TABLE;
CREATE TABLE $TABLE (
  id bigint PRIMARY KEY,
  created_at timestamptz NOT NULL,
  amount numeric(12,2) NOT NULL,
  note text NOT NULL,
  active boolean NOT NULL
);
INSERT INTO $TABLE
SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second',
       (i % 100000) / 100.0, 'order note ' || i, i % 3 = 0
FROM generate_series(1, $ROWS) i;
CREATE INDEX ON $TABLE (created_at, id);
VACUUM ANALYZE $TABLE;
SQL
  fi
}
