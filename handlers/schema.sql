-- The example application's schema: users write posts, comment on them and vote on them.
-- Idempotent: `cdc db init --schema handlers/schema.sql` runs it as the application role.
CREATE TABLE IF NOT EXISTS users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    handle        text NOT NULL UNIQUE,
    email         text NOT NULL,
    password_hash text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS posts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    author_id  bigint NOT NULL REFERENCES users (id),
    title      text NOT NULL,
    body       text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS comments (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    post_id    bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    author_id  bigint NOT NULL REFERENCES users (id),
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS votes (
    post_id  bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    voter_id bigint NOT NULL REFERENCES users (id),
    value    smallint NOT NULL CHECK (value IN (-1, 1)),
    PRIMARY KEY (post_id, voter_id)
);

-- A few rows present before the connector starts: they arrive as snapshot reads.
INSERT INTO users (handle, email, password_hash)
VALUES ('ada', 'ada@example.org', 'not-a-real-hash'), ('linus', 'linus@example.org', NULL)
ON CONFLICT (handle) DO NOTHING;
INSERT INTO posts (author_id, title, body)
SELECT u.id, 'Hello, change data capture', 'Every row change becomes an event.'
FROM users u WHERE u.handle = 'ada' AND NOT EXISTS (SELECT 1 FROM posts);
INSERT INTO votes (post_id, voter_id, value)
SELECT p.id, u.id, 1 FROM posts p, users u
WHERE u.handle = 'linus' AND NOT EXISTS (SELECT 1 FROM votes)
ORDER BY p.id LIMIT 1;

-- What the handlers derive from the changes. Not watched, and no foreign keys: a handler may
-- run after the row it reacts to is gone.
CREATE TABLE IF NOT EXISTS user_stats (
    user_id    bigint PRIMARY KEY,
    posts      integer NOT NULL,
    comments   integer NOT NULL DEFAULT 0,  -- a running total, kept exact by the ledger
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE user_stats ADD COLUMN IF NOT EXISTS comments integer NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS post_stats (
    post_id    bigint PRIMARY KEY,
    score      integer NOT NULL,
    votes      integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS notifications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_key text NOT NULL,  -- the change's idempotency key: one notification per change
    user_id    bigint NOT NULL,
    kind       text NOT NULL,
    message    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (change_key, user_id)
);

-- The post workflow's state (handlers/moderation.py).
CREATE TABLE IF NOT EXISTS post_reviews (
    post_id      bigint PRIMARY KEY,
    verdict      text NOT NULL,
    reason       text,
    reviewed_at  timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

CREATE TABLE IF NOT EXISTS audit_log (
    change_key   text PRIMARY KEY,
    table_name   text NOT NULL,
    op           char(1) NOT NULL,
    row_key      jsonb,
    changed      text[],
    before       jsonb,
    after        jsonb,
    committed_at timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
