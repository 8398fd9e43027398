"""Cluster mode: hosts joined through NATS JetStream (docs/cluster.md, docs/adr/0005).

`share` (this host's part of a weave, as `$LOOM_HOME/cluster.json`) needs no NATS
client; `link`, `publisher`, `bridge` and `status` talk to NATS and are imported only
for a weave with `cluster:`.
"""
