//! Numbered, append-only schema migrations. Never edit a shipped migration: add the next one.

/// `(version, sql)`; applied in order inside one transaction each, recorded in `schema_migrations`.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, V1),
    (2, V2),
    (3, V3),
    (4, V4),
    (5, V5),
    (6, V6),
    (7, V7),
];

const V1: &str = r#"
CREATE TABLE workflow_definitions (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    source       TEXT NOT NULL,
    definition   TEXT NOT NULL,          -- JSON of phases::WorkflowDefinition
    loaded_at    INTEGER NOT NULL
);

CREATE TABLE agents (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('managed', 'external')),
    cli_type         TEXT,
    token_hash       TEXT,
    status           TEXT NOT NULL DEFAULT 'idle'
                     CHECK (status IN ('idle', 'working', 'stuck', 'terminated')),
    current_task_id  TEXT,
    tmux_session     TEXT,
    worktree_path    TEXT,
    client_name      TEXT,
    client_pid       INTEGER,
    created_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    terminated_at    INTEGER
);
CREATE INDEX agents_status ON agents(status);

CREATE TABLE workflows (
    id                  TEXT PRIMARY KEY,
    definition_id       TEXT NOT NULL REFERENCES workflow_definitions(id),
    name                TEXT NOT NULL,
    description         TEXT NOT NULL,
    status              TEXT NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'paused', 'completed', 'failed')),
    working_directory   TEXT,
    launch_params       TEXT NOT NULL DEFAULT '{}',
    config              TEXT NOT NULL DEFAULT '{}',   -- JSON of phases::WorkflowConfig at start
    created_by_agent_id TEXT REFERENCES agents(id),
    created_at          INTEGER NOT NULL,
    completed_at        INTEGER
);
CREATE INDEX workflows_status ON workflows(status, created_at);

CREATE TABLE phases (
    id                TEXT PRIMARY KEY,
    workflow_id       TEXT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    phase_order       INTEGER NOT NULL,
    name              TEXT NOT NULL,
    description       TEXT NOT NULL,
    done_definitions  TEXT NOT NULL DEFAULT '[]',
    additional_notes  TEXT NOT NULL DEFAULT '',
    outputs           TEXT NOT NULL DEFAULT '[]',
    next_steps        TEXT NOT NULL DEFAULT '[]',
    working_directory TEXT,
    cli_tool          TEXT,
    cli_model         TEXT,
    validation        TEXT,
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'in_progress', 'completed', 'failed', 'skipped')),
    UNIQUE (workflow_id, phase_order)
);

CREATE TABLE tasks (
    id                  TEXT PRIMARY KEY,
    workflow_id         TEXT REFERENCES workflows(id),
    phase_id            TEXT REFERENCES phases(id),
    phase_order         INTEGER NOT NULL DEFAULT 0,      -- 0: outside any workflow
    description         TEXT NOT NULL,
    done_definition     TEXT NOT NULL,
    priority            TEXT NOT NULL CHECK (priority IN ('low', 'medium', 'high')),
    priority_weight     INTEGER NOT NULL,
    boosted             INTEGER NOT NULL DEFAULT 0,
    status              TEXT NOT NULL
                        CHECK (status IN ('pending', 'queued', 'blocked', 'assigned',
                                          'in_progress', 'done', 'failed')),
    assigned_agent_id   TEXT REFERENCES agents(id),
    created_by_agent_id TEXT REFERENCES agents(id),
    parent_task_id      TEXT REFERENCES tasks(id),
    idempotency_key     TEXT UNIQUE,
    summary             TEXT,
    failure_reason      TEXT,
    key_learnings       TEXT NOT NULL DEFAULT '[]',
    attempts            INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    queued_at           INTEGER,
    assigned_at         INTEGER,
    started_at          INTEGER,
    completed_at        INTEGER,
    updated_at          INTEGER NOT NULL
);
-- The claim query walks this index in queue order (see queue::QUEUE_ORDER_SQL).
CREATE INDEX tasks_queue ON tasks(status, boosted DESC, priority_weight DESC, phase_order, queued_at);
CREATE INDEX tasks_workflow ON tasks(workflow_id, status);
CREATE INDEX tasks_agent ON tasks(assigned_agent_id);

CREATE TABLE task_dependencies (
    task_id            TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    depends_on_task_id TEXT NOT NULL REFERENCES tasks(id),
    PRIMARY KEY (task_id, depends_on_task_id)
) WITHOUT ROWID;
CREATE INDEX task_dependents ON task_dependencies(depends_on_task_id);

CREATE TABLE agent_events (
    id         INTEGER PRIMARY KEY,
    agent_id   TEXT REFERENCES agents(id),
    task_id    TEXT,
    kind       TEXT NOT NULL,
    message    TEXT NOT NULL,
    details    TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX agent_events_agent ON agent_events(agent_id, id);
"#;

/// The agent manager: where each agent works and how its work was merged back.
const V2: &str = r#"
ALTER TABLE agents ADD COLUMN branch TEXT;
ALTER TABLE agents ADD COLUMN base_commit TEXT;
-- active | merged | conflict | abandoned
ALTER TABLE agents ADD COLUMN merge_status TEXT;
ALTER TABLE agents ADD COLUMN merge_commit TEXT;
-- The commit a task's worktree starts from (a conflict follow-up, or a dead agent's work).
ALTER TABLE tasks ADD COLUMN base_ref TEXT;
-- merged | up_to_date | conflict
ALTER TABLE tasks ADD COLUMN merge_status TEXT;
ALTER TABLE tasks ADD COLUMN merge_conflict_files TEXT NOT NULL DEFAULT '[]';
"#;

/// Messages between agents: a persistent inbox per agent.
const V3: &str = r#"
CREATE TABLE messages (
    id                 INTEGER PRIMARY KEY,
    sender_agent_id    TEXT REFERENCES agents(id),
    recipient_agent_id TEXT NOT NULL REFERENCES agents(id),
    broadcast          INTEGER NOT NULL DEFAULT 0,
    body               TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    -- Typed into the recipient's terminal by the agent manager.
    typed_at           INTEGER,
    -- Returned to the recipient by get_messages.
    read_at            INTEGER
);
CREATE INDEX messages_inbox ON messages(recipient_agent_id, read_at);
CREATE INDEX messages_untyped ON messages(typed_at, recipient_agent_id);
CREATE INDEX messages_broadcasts ON messages(sender_agent_id, broadcast, created_at);
"#;

/// Agent memory. The vector lives here with the text: the search index is derived from this
/// table and can always be rebuilt from it.
const V4: &str = r#"
CREATE TABLE memories (
    id            INTEGER PRIMARY KEY,
    content       TEXT NOT NULL,
    memory_type   TEXT NOT NULL CHECK (memory_type IN ('error_fix', 'discovery', 'decision', 'learning',
                                                      'warning', 'codebase_knowledge')),
    tags          TEXT NOT NULL DEFAULT '[]',
    related_files TEXT NOT NULL DEFAULT '[]',
    agent_id      TEXT REFERENCES agents(id),
    task_id       TEXT REFERENCES tasks(id),
    workflow_id   TEXT REFERENCES workflows(id),
    -- The vector and the embedder that made it; NULL until embedded (pending).
    embedder_id   TEXT,
    dim           INTEGER,
    vector        BLOB,
    created_at    INTEGER NOT NULL
);
CREATE INDEX memories_pending ON memories(embedder_id);
CREATE INDEX memories_created ON memories(created_at);
"#;

/// Token vectors for token re-ranking (`memory/tokens.rs`), from the memory's `embedder_id`; NULL
/// when that embedder has none. Existing memories get them when next embedded.
const V5: &str = r#"
ALTER TABLE memories ADD COLUMN token_ids BLOB;
ALTER TABLE memories ADD COLUMN token_vectors BLOB;
"#;

/// One row per chat-model call the coordinator made (`llm/`): who asked, for what, and what it
/// cost. No foreign keys: usage outlives the tasks and agents it was for.
const V6: &str = r#"
CREATE TABLE llm_usage (
    id             INTEGER PRIMARY KEY,
    at             INTEGER NOT NULL,
    component      TEXT NOT NULL CHECK (component IN ('guardian', 'conductor', 'validator')),
    workflow_id    TEXT,
    task_id        TEXT,
    agent_id       TEXT,
    provider       TEXT NOT NULL,
    model          TEXT NOT NULL,
    input_tokens   INTEGER NOT NULL,
    output_tokens  INTEGER NOT NULL,
    cached_tokens  INTEGER NOT NULL DEFAULT 0,
    cost_usd       REAL,
    cost_source    TEXT NOT NULL CHECK (cost_source IN ('provider', 'price_table', 'unknown'))
);
CREATE INDEX llm_usage_at ON llm_usage(at);

-- What the guardian's LLM judged of an agent at work, and the steer it typed, if any.
CREATE TABLE guardian_analyses (
    id               INTEGER PRIMARY KEY,
    at               INTEGER NOT NULL,
    agent_id         TEXT NOT NULL,
    task_id          TEXT,
    agent_state      TEXT NOT NULL CHECK (agent_state IN ('starting', 'working', 'idle',
                         'blocked_permission', 'blocked_question', 'blocked_screen', 'error',
                         'exited', 'unknown')),
    alignment_score  REAL NOT NULL,
    aligned          INTEGER NOT NULL,
    needs_steering   INTEGER NOT NULL,
    steering_type    TEXT CHECK (steering_type IN ('stuck', 'drifting', 'violating_constraints',
                                                   'over_engineering', 'confused', 'idle')),
    message          TEXT,
    summary          TEXT NOT NULL,
    steered_at       INTEGER,
    steer_outcome    TEXT CHECK (steer_outcome IN ('followed', 'ignored'))
);
CREATE INDEX guardian_analyses_agent ON guardian_analyses(agent_id, at);
"#;

/// Messages from a part of the coordinator (the conductor) rather than an agent or a person,
/// and what the conductor decided about each pair of agents whose work overlaps.
const V7: &str = r#"
ALTER TABLE messages ADD COLUMN sender_name TEXT;

CREATE TABLE conductor_decisions (
    id                 INTEGER PRIMARY KEY,
    at                 INTEGER NOT NULL,
    agent_a            TEXT NOT NULL,
    agent_b            TEXT NOT NULL,
    task_a             TEXT,
    task_b             TEXT,
    -- JSON arrays of paths: what both change, and what a merge of the two would conflict on.
    files              TEXT NOT NULL,
    conflicts          TEXT NOT NULL,
    -- How alike their task texts are (cosine of the memory embedder's vectors), when they are.
    similar_tasks      REAL,
    action             TEXT NOT NULL CHECK (action IN ('message_agents', 'reconcile',
                                                       'tell_person', 'none')),
    reason             TEXT NOT NULL,
    message_a          TEXT,
    message_b          TEXT,
    reconcile_task_id  TEXT,
    -- What went wrong carrying the action out, if anything did.
    failure            TEXT
);
"#;
