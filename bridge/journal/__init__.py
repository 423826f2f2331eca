"""The shared base of the journal-keeping backends (sql, langgraph).

- `context`: `JournaledContext`, the replaying context, and `drive()`;
- `schema`: the journal tables, made under each backend's own names;
- `store`: `JournalStore` (runs, leases, journal rows, waits, signals, cancellation), over
  `_database` (dialect, transactions, schema), `_leases` and `_steps`;
- `worker`: `JournalWorker`, the claim/execute/renew/recover loop;
- `backend`: `JournalBackend`, the `bridge.Backend` on a store;
- `history`: a journal as the neutral history;
- `owner`: lease owner ids and proof that an owner died; `integrity`: SQLite file checks.

Nothing is imported here: `import bridge.journal.context` (the replay harness does) must not
load SQLAlchemy.
"""
