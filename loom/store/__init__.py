"""The store: loom's whole state as plain files under $LOOM_HOME (SPEC 1-3).

Messages and their ids, atomic writes, bounded reads, the queue of one process folder,
the home layout, logs, the watcher, the serve loop over one queue, and the process
folders seen from outside (`ps`, `stop`, `logs`). This package imports nothing itself.
"""
