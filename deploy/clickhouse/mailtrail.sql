-- mailtrail's audit records in ClickHouse, filled by deploy/vector/mailtrail-clickhouse.yaml.
-- docs/fleet.md, "Shipping trails to a central store". ReplacingMergeTree keyed by the record's
-- instance and id: a batch the shipper sends twice (after a timeout) collapses to one row.
CREATE TABLE IF NOT EXISTS mail.mailtrail
(
    time       DateTime64(3, 'UTC'),
    instance   LowCardinality(String),
    type       LowCardinality(String),
    id         String,
    outcome    LowCardinality(String),
    class      LowCardinality(String),
    sender     String,
    client_ip  String,
    proxy_ip   String,
    upstream   LowCardinality(String),
    message_id String,
    sha256     String,
    seq        UInt64,
    raw        String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (instance, id);
