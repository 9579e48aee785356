"""Projections: what the record means, derived from it in seq order per device.

`apply.project(conn, env)` folds one verified envelope into the projection tables;
`advance.advance(conn, device)` feeds it every stored envelope after the device's
projected head, stopping at the first missing seq, so the result depends only on the
stored record and never on the order in which envelopes arrived. `daily` computes the
daily reconciliation from the ledger and the weighings.
"""
