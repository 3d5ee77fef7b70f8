"""The delivery pipeline, one module per step of an event's path (see `docs/pipeline.md`).

`unit` (the `Delivery`), `lane` (a webhook's queue, gate and ordering chains), `paging` (what
a store holds pending, handed to the lanes), `outcome` (the pure decision after an attempt),
`failures` (callbacks, dead letters, fallback, replay); `dispatcher.py` wires them.

Nothing is imported here, so a store can import `unit` without importing the pipeline.
"""
