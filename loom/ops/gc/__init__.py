"""`loom gc`: housekeeping that is safe while everything runs (SPEC 11).

Old `.processed/` and outbox files go to `archive/<day>.ndjson.gz`; crash records, old
logs and old pipe steps are deleted (logs gzipped first); dedupe state is cut to its
last keys; delivery logs forget names that left their outbox. Inboxes, `.in-progress/`,
undelivered outbox files and state a live process holds are never touched. A second run
finds nothing to do. One `loom gc` runs at a time (an flock on `gc.lock`).

The run is `loom.ops.gc.sweep.run`. The archive format lives in `loom.ops.gc.archive`, which
`loom trace` reads too; this package imports nothing itself, so reading the archive
does not load the router and the weave parser.
"""
