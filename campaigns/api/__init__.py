"""REST API v1 for the campaigns app (mounted under /api/v1/ by ``scrm.api_urls``).

* ``contents/``: the content library. Everyone with a role reads; operators and API
  clients write. DELETE archives (SOP steps keep using an archived content).
* ``sops/``: SOPs with their current version's steps nested in the body. Updating an
  active SOP publishes a new version and answers what happened to the customers in
  flight. Actions: ``activate/``, ``pause/``, ``archive/``, ``enrol/`` (manual trigger),
  ``versions/``, ``preview/`` (a dry run: who would enter, when, collisions, quota).
* ``campaigns/``: campaigns; ``report/`` (enrolled, sent, confirmed, converted, holdout,
  lift with its 95 % confidence interval).
* ``touchpoints/``: the log, read-only, filterable (``campaigns.filters.TouchpointFilter``),
  scoped to the customers the user may see; ``done/`` and ``snooze/`` on a waiting to-do.
* ``todos/``: the asking staff member's to-dos, overdue first, with the message to copy.
* ``coupon-batches/``, ``coupons/redeem/``, ``customers/{id}/points/`` (and ``spend/``).

Services raise ``ValidationError`` with field messages: a 400 in the API's error shape.
Each module is imported by ``scrm.api_urls`` on its own.
"""
