"""The delivery pipeline, one module per step of an event's path (see `docs/pipeline.md`).

`unit` (the `Delivery`), `admission` (an event's deliveries queued, or refused with
`QueueFull`), `paging` (what a store holds pending, handed to the lanes), `lane` (a webhook's
queue, gate and ordering chains), `work` (a lane's workers), `outcome` (the pure decision
after an attempt), `failures` (callbacks, dead letters, fallback, replay) and `sessions` (the
HTTP sessions); `empathy_webhooks_core/dispatcher.py` wires them.

Nothing is imported here, so a store can import `unit` without importing the pipeline.
"""
