-- sipdata schema: every table, default, reference and index of the seed
-- (shared/spec/warp-database-schema.md), made to load on PostgreSQL 15.
--
-- Deviations from the seed are marked "DEVIATION" where they are made. The
-- file is idempotent (IF NOT EXISTS everywhere) so it can be re-applied; the
-- `sipdata migrate` command records the version it applied in
-- schema_migrations and does nothing on a second run.
--
-- CockroachDB: everything here except the three PARTITION BY / PARTITION OF
-- blocks is also valid CockroachDB SQL. On CockroachDB, drop the PARTITION BY
-- clauses (it partitions by primary-key prefix instead, and ranges split
-- automatically); the composite primary keys below work unchanged there.

-- Bookkeeping for `sipdata migrate`. DEVIATION: not in the seed (the seed asks
-- for "Flyway or similar" schema versioning; this is that, minimal).
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INT PRIMARY KEY,
    checksum VARCHAR(64) NOT NULL,
    applied_at TIMESTAMP NOT NULL DEFAULT NOW()
);

-- 1. Organizations ---------------------------------------------------------

CREATE TABLE IF NOT EXISTS organizations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    fcc_filer_id VARCHAR(50) UNIQUE,
    parent_org_id UUID REFERENCES organizations(id),
    status VARCHAR(50) DEFAULT 'active',
    tier VARCHAR(50) DEFAULT 'standard',
    billing_account_id UUID,
    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMP DEFAULT NOW(),
    updated_at TIMESTAMP DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS organization_settings (
    org_id UUID PRIMARY KEY REFERENCES organizations(id),
    max_trunks INT DEFAULT 10,
    max_numbers INT DEFAULT 1000,
    max_concurrent_calls INT DEFAULT 10000,
    allowed_regions JSONB DEFAULT '["US"]',
    features JSONB DEFAULT '{}',
    rate_limits JSONB DEFAULT '{}',
    updated_at TIMESTAMP DEFAULT NOW()
);

-- 2. Users & authentication ------------------------------------------------

CREATE TABLE IF NOT EXISTS users (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id UUID NOT NULL REFERENCES organizations(id),
    email VARCHAR(255) UNIQUE NOT NULL,
    username VARCHAR(100) UNIQUE NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    role VARCHAR(50) DEFAULT 'user',
    status VARCHAR(50) DEFAULT 'active',
    mfa_enabled BOOLEAN DEFAULT FALSE,
    mfa_secret VARCHAR(255),
    last_login TIMESTAMP,
    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMP DEFAULT NOW(),
    updated_at TIMESTAMP DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS api_keys (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id UUID NOT NULL REFERENCES organizations(id),
    user_id UUID REFERENCES users(id),
    key_hash VARCHAR(255) UNIQUE NOT NULL,
    name VARCHAR(255) NOT NULL,
    permissions JSONB DEFAULT '[]',
    rate_limit INT DEFAULT 1000,
    last_used TIMESTAMP,
    expires_at TIMESTAMP,
    status VARCHAR(50) DEFAULT 'active',
    created_at TIMESTAMP DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS audit_logs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id UUID REFERENCES organizations(id),
    user_id UUID REFERENCES users(id),
    api_key_id UUID REFERENCES api_keys(id),
    action VARCHAR(100) NOT NULL,
    resource_type VARCHAR(50),
    resource_id VARCHAR(255),
    ip_address INET,
    user_agent TEXT,
    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMP DEFAULT NOW()
);

-- 3. SIP trunks ------------------------------------------------------------

-- password_hash holds HA1 values, never a password:
--   ha1v1$<md5 HA1>$<sha-256 HA1>$<realm>   (sipdata/decide/digest.py)
-- auth_type: 'digest' (credentials; allowed_ips / trunk_acl then restrict the
-- source) or 'ip' (the source address alone identifies the trunk).
CREATE TABLE IF NOT EXISTS sip_trunks (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id UUID NOT NULL REFERENCES organizations(id),
    name VARCHAR(255) NOT NULL,
    username VARCHAR(100) UNIQUE NOT NULL,
    password_hash VARCHAR(255),
    auth_type VARCHAR(50) DEFAULT 'digest',
    status VARCHAR(50) DEFAULT 'active',

    max_channels INT DEFAULT 100,
    channels_in_use INT DEFAULT 0,

    allowed_ips JSONB DEFAULT '[]',
    transport VARCHAR(20) DEFAULT 'UDP',
    nat_enabled BOOLEAN DEFAULT FALSE,

    codecs JSONB DEFAULT '["PCMU", "PCMA", "G722"]',
    dtmf_mode VARCHAR(20) DEFAULT 'RFC2833',
    fax_enabled BOOLEAN DEFAULT FALSE,
    srtp_mode VARCHAR(20) DEFAULT 'optional',

    inbound_context VARCHAR(100) DEFAULT 'from-trunk',
    outbound_proxy VARCHAR(255),
    failover_trunk_id UUID REFERENCES sip_trunks(id),

    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMP DEFAULT NOW(),
    updated_at TIMESTAMP DEFAULT NOW(),

    UNIQUE(org_id, name)
);

CREATE TABLE IF NOT EXISTS trunk_registrations (
    trunk_id UUID PRIMARY KEY REFERENCES sip_trunks(id),
    contact VARCHAR(255),
    received VARCHAR(255),
    user_agent VARCHAR(255),
    expires_at TIMESTAMP,
    last_seen TIMESTAMP DEFAULT NOW(),
    status VARCHAR(50) DEFAULT 'offline',
    -- DEVIATION: the REGISTER's Call-ID and CSeq, so a late report with a lower
    -- CSeq of the same registration never overwrites a newer one (migration 2).
    call_id VARCHAR(255),
    cseq BIGINT
);

CREATE TABLE IF NOT EXISTS trunk_acl (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    trunk_id UUID NOT NULL REFERENCES sip_trunks(id),
    ip_address INET NOT NULL,
    subnet_mask INT DEFAULT 32,
    description VARCHAR(255),
    created_at TIMESTAMP DEFAULT NOW(),

    UNIQUE(trunk_id, ip_address)
);

-- 4. Phone numbers ---------------------------------------------------------

-- number holds the canonical form (E.164 digits without '+', see
-- sipdata/decide/numbers.py); status 'active' routes, anything else does not.
CREATE TABLE IF NOT EXISTS phone_numbers (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    number VARCHAR(20) UNIQUE NOT NULL,
    country_code VARCHAR(5) NOT NULL,
    number_type VARCHAR(20) DEFAULT 'local',

    org_id UUID REFERENCES organizations(id),
    trunk_id UUID REFERENCES sip_trunks(id),

    voice_enabled BOOLEAN DEFAULT TRUE,
    sms_enabled BOOLEAN DEFAULT FALSE,
    mms_enabled BOOLEAN DEFAULT FALSE,
    fax_enabled BOOLEAN DEFAULT FALSE,

    status VARCHAR(50) DEFAULT 'available',
    ported_in BOOLEAN DEFAULT FALSE,
    port_in_date DATE,

    rate_center VARCHAR(100),
    state VARCHAR(2),
    lata VARCHAR(10),

    cnam_enabled BOOLEAN DEFAULT FALSE,
    cnam_display VARCHAR(100),

    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMP DEFAULT NOW(),
    updated_at TIMESTAMP DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS e911_addresses (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    phone_number_id UUID UNIQUE REFERENCES phone_numbers(id),

    customer_name VARCHAR(255) NOT NULL,
    street_number VARCHAR(20) NOT NULL,
    street_name VARCHAR(255) NOT NULL,
    street_suffix VARCHAR(20),
    unit_type VARCHAR(20),
    unit_number VARCHAR(20),
    city VARCHAR(100) NOT NULL,
    state VARCHAR(2) NOT NULL,
    zip VARCHAR(10) NOT NULL,
    plus_four VARCHAR(4),

    validated BOOLEAN DEFAULT FALSE,
    validation_date TIMESTAMP,
    msag_valid BOOLEAN DEFAULT FALSE,

    created_at TIMESTAMP DEFAULT NOW(),
    updated_at TIMESTAMP DEFAULT NOW()
);

-- 5. Routing rules and LCR rates -------------------------------------------

-- JSONB formats of time_condition / transform_rules and the meaning of
-- action / destination: sipdata/decide/rules.py and docs/api.md.
CREATE TABLE IF NOT EXISTS routing_rules (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id UUID NOT NULL REFERENCES organizations(id),
    trunk_id UUID REFERENCES sip_trunks(id),

    name VARCHAR(255) NOT NULL,
    priority INT DEFAULT 100,
    enabled BOOLEAN DEFAULT TRUE,

    match_type VARCHAR(50) DEFAULT 'prefix',
    match_pattern VARCHAR(255) NOT NULL,
    time_condition JSONB DEFAULT '{}',

    action VARCHAR(50) NOT NULL,
    destination VARCHAR(255),
    transform_rules JSONB DEFAULT '{}',

    weight INT DEFAULT 100,
    max_calls INT,

    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMP DEFAULT NOW(),
    updated_at TIMESTAMP DEFAULT NOW()
);

-- Dates are UTC days; a row is in effect on [effective_date, expiry_date).
CREATE TABLE IF NOT EXISTS lcr_rates (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    carrier_id UUID REFERENCES organizations(id),
    prefix VARCHAR(20) NOT NULL,
    description VARCHAR(255),
    rate DECIMAL(10, 6) NOT NULL,
    effective_date DATE NOT NULL,
    expiry_date DATE,
    priority INT DEFAULT 100,

    UNIQUE(carrier_id, prefix, effective_date)
);

-- 6. Call detail records ---------------------------------------------------

-- DEVIATION: the seed declares `id UUID PRIMARY KEY` and `call_id UNIQUE` on a
-- table partitioned by start_time; PostgreSQL refuses both, because a unique
-- key on a partitioned table must include the partition column. Both keys
-- now include start_time. A call's start_time is fixed by its first report,
-- so (call_id, start_time) still makes a CDR write idempotent per call.
CREATE TABLE IF NOT EXISTS cdrs (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    call_id VARCHAR(255) NOT NULL,

    org_id UUID NOT NULL REFERENCES organizations(id),
    trunk_id UUID REFERENCES sip_trunks(id),
    from_number VARCHAR(50),
    to_number VARCHAR(50),

    start_time TIMESTAMP NOT NULL,
    answer_time TIMESTAMP,
    end_time TIMESTAMP,
    duration INT DEFAULT 0,
    billable_duration INT DEFAULT 0,

    inbound BOOLEAN DEFAULT FALSE,
    source_ip INET,
    destination_ip INET,

    sip_response_code INT,
    termination_cause VARCHAR(100),

    mos_score DECIMAL(3, 2),
    packet_loss DECIMAL(5, 2),
    jitter_avg INT,
    rtt_avg INT,

    rate DECIMAL(10, 6),
    cost DECIMAL(10, 4),
    billed BOOLEAN DEFAULT FALSE,

    codecs_used JSONB DEFAULT '[]',
    recording_url VARCHAR(500),

    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMP DEFAULT NOW(),

    PRIMARY KEY (id, start_time),
    UNIQUE (call_id, start_time)
) PARTITION BY RANGE (start_time);

-- DEVIATION: the seed creates cdrs_2025_01 and cdrs_2025_02 by hand ("continue
-- for all months"). Monthly partitions are created ahead of time by
-- `sipdata partitions` (also run by `sipdata migrate`), named <table>_YYYY_MM.
-- A DEFAULT partition catches a row whose month has no partition yet, so a
-- lapsed maintenance job never loses a CDR; `sipdata partitions` reports rows
-- found there.
CREATE TABLE IF NOT EXISTS cdrs_default PARTITION OF cdrs DEFAULT;

CREATE INDEX IF NOT EXISTS idx_cdrs_org_id ON cdrs(org_id);
CREATE INDEX IF NOT EXISTS idx_cdrs_trunk_id ON cdrs(trunk_id);
CREATE INDEX IF NOT EXISTS idx_cdrs_start_time ON cdrs(start_time);
CREATE INDEX IF NOT EXISTS idx_cdrs_from_to ON cdrs(from_number, to_number);

-- 7. Billing ---------------------------------------------------------------

CREATE TABLE IF NOT EXISTS billing_accounts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id UUID UNIQUE NOT NULL REFERENCES organizations(id),

    payment_method VARCHAR(50) DEFAULT 'invoice',
    stripe_customer_id VARCHAR(255),

    billing_email VARCHAR(255),
    billing_address JSONB,
    tax_id VARCHAR(50),

    credit_limit DECIMAL(10, 2) DEFAULT 0,
    current_balance DECIMAL(10, 2) DEFAULT 0,
    auto_recharge BOOLEAN DEFAULT FALSE,
    auto_recharge_amount DECIMAL(10, 2),
    auto_recharge_threshold DECIMAL(10, 2),

    created_at TIMESTAMP DEFAULT NOW(),
    updated_at TIMESTAMP DEFAULT NOW()
);

-- DEVIATION: primary key (id, period_start) instead of (id); see cdrs.
CREATE TABLE IF NOT EXISTS usage_records (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    org_id UUID NOT NULL REFERENCES organizations(id),

    usage_type VARCHAR(50) NOT NULL,
    quantity DECIMAL(15, 4) NOT NULL,
    unit VARCHAR(20) NOT NULL,
    rate DECIMAL(10, 6),
    amount DECIMAL(10, 4),

    period_start TIMESTAMP NOT NULL,
    period_end TIMESTAMP NOT NULL,

    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMP DEFAULT NOW(),

    PRIMARY KEY (id, period_start)
) PARTITION BY RANGE (period_start);

-- DEVIATION: default partition, as for cdrs.
CREATE TABLE IF NOT EXISTS usage_records_default PARTITION OF usage_records DEFAULT;

CREATE TABLE IF NOT EXISTS invoices (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id UUID NOT NULL REFERENCES organizations(id),
    invoice_number VARCHAR(50) UNIQUE NOT NULL,

    period_start DATE NOT NULL,
    period_end DATE NOT NULL,

    subtotal DECIMAL(10, 2) NOT NULL,
    tax_amount DECIMAL(10, 2) DEFAULT 0,
    total DECIMAL(10, 2) NOT NULL,

    status VARCHAR(50) DEFAULT 'draft',
    due_date DATE,
    paid_date DATE,

    line_items JSONB DEFAULT '[]',

    created_at TIMESTAMP DEFAULT NOW(),
    updated_at TIMESTAMP DEFAULT NOW()
);

-- 8. Messaging -------------------------------------------------------------

-- DEVIATION: primary key (id, created_at) and UNIQUE (message_id, created_at)
-- instead of (id) and (message_id); see cdrs. created_at is NOT NULL because
-- it is the partition key (its default still fills it).
CREATE TABLE IF NOT EXISTS messages (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    message_id VARCHAR(255) NOT NULL,

    org_id UUID NOT NULL REFERENCES organizations(id),
    from_number VARCHAR(50) NOT NULL,
    to_number VARCHAR(50) NOT NULL,

    message_type VARCHAR(20) DEFAULT 'sms',
    body TEXT,
    media_urls JSONB DEFAULT '[]',
    num_segments INT DEFAULT 1,

    direction VARCHAR(20) NOT NULL,
    status VARCHAR(50) DEFAULT 'queued',
    error_code VARCHAR(20),
    error_message TEXT,

    sent_at TIMESTAMP,
    delivered_at TIMESTAMP,

    rate DECIMAL(10, 6),
    cost DECIMAL(10, 4),

    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),

    PRIMARY KEY (id, created_at),
    UNIQUE (message_id, created_at)
) PARTITION BY RANGE (created_at);

-- DEVIATION: default partition, as for cdrs.
CREATE TABLE IF NOT EXISTS messages_default PARTITION OF messages DEFAULT;

CREATE TABLE IF NOT EXISTS messaging_campaigns (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id UUID NOT NULL REFERENCES organizations(id),
    name VARCHAR(255) NOT NULL,

    from_number VARCHAR(50) NOT NULL,
    recipient_list JSONB NOT NULL,

    message_template TEXT NOT NULL,
    media_urls JSONB DEFAULT '[]',

    scheduled_at TIMESTAMP,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,

    total_recipients INT DEFAULT 0,
    sent_count INT DEFAULT 0,
    delivered_count INT DEFAULT 0,
    failed_count INT DEFAULT 0,

    status VARCHAR(50) DEFAULT 'draft',

    created_at TIMESTAMP DEFAULT NOW(),
    updated_at TIMESTAMP DEFAULT NOW()
);

-- Performance-critical indexes (the seed's list) ---------------------------

CREATE INDEX IF NOT EXISTS idx_trunks_org_status ON sip_trunks(org_id, status);
CREATE INDEX IF NOT EXISTS idx_numbers_org_status ON phone_numbers(org_id, status);
CREATE INDEX IF NOT EXISTS idx_routing_org_enabled ON routing_rules(org_id, enabled);
CREATE INDEX IF NOT EXISTS idx_cdrs_org_time ON cdrs(org_id, start_time DESC);
CREATE INDEX IF NOT EXISTS idx_messages_org_time ON messages(org_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_audit_org_time ON audit_logs(org_id, created_at DESC);

-- DEVIATION (additions): the read-through path looks rates up by prefix and
-- ACL rows by trunk; without these a cache miss scans the whole table.
CREATE INDEX IF NOT EXISTS idx_lcr_rates_prefix ON lcr_rates(prefix);
CREATE INDEX IF NOT EXISTS idx_trunk_acl_trunk ON trunk_acl(trunk_id);
