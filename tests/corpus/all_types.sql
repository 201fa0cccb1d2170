-- One table with every PostgreSQL type the decoders must handle. DEFAULT replica identity on
-- purpose: an update that leaves the TOASTed column alone sends Debezium's placeholder.
DROP SCHEMA IF EXISTS corpus CASCADE;
CREATE SCHEMA corpus;
CREATE TYPE corpus.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE corpus.all_types (
    id              int PRIMARY KEY,
    c_smallint      smallint,
    c_int           int,
    c_bigint        bigint,
    c_numeric       numeric(12, 3),
    c_numeric_var   numeric,
    c_real          real,
    c_double        double precision,
    c_bool          boolean,
    c_text          text,
    c_varchar       varchar(20),
    c_char          char(3),
    c_bytea         bytea,
    c_date          date,
    c_time_ms       time(3),
    c_time_us       time,
    c_timetz        timetz,
    c_timestamp_ms  timestamp(3),
    c_timestamp_us  timestamp,
    c_timestamptz   timestamptz,
    c_interval      interval,
    c_json          json,
    c_jsonb         jsonb,
    c_uuid          uuid,
    c_mood          corpus.mood,
    c_int_array     int[],
    c_text_array    text[],
    c_default       text NOT NULL DEFAULT 'fallback',
    c_toast         text
);

-- Rows present before the connectors start: they arrive as snapshot reads.
INSERT INTO corpus.all_types VALUES (
    1, -32768, 2147483647, -9223372036854775808, 123456789.125, -0.000000001234567890123,
    1.5, -2.25e-300, true, 'héllo wörld ✓', 'varchar', 'ab', '\x00ff10'::bytea,
    '2024-02-29', '13:45:59.123', '23:59:59.999999', '10:11:12.345678+05:30',
    '2024-02-29 13:45:59.123', '1999-12-31 23:59:59.999999', '2024-06-30 22:00:00.5+02',
    '1 year 2 months 3 days 04:05:06.789', '{"a": [1, 2.5, null], "b": "x"}',
    '{"nested": {"k": true}, "n": 12345678901234567890}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    'happy', '{1,NULL,3}', '{"a","b c",NULL}', DEFAULT,
    (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) AS i)
);
INSERT INTO corpus.all_types (id) VALUES (2);
INSERT INTO corpus.all_types (id, c_numeric, c_date, c_timestamp_ms, c_timestamp_us, c_timestamptz,
                              c_text, c_bytea, c_int_array, c_text_array, c_jsonb, c_interval)
VALUES (3, -0.001, 'infinity', '-infinity', 'infinity', '-infinity', '', ''::bytea, '{}', '{}',
        '[]', '-3 days -00:00:01');
-- The opposite infinities, so every sentinel Debezium uses is in the corpus.
INSERT INTO corpus.all_types (id, c_date, c_timestamp_ms, c_timestamp_us, c_timestamptz)
VALUES (5, '-infinity', 'infinity', '-infinity', 'infinity');
