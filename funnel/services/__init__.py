"""Keeping the funnel's milestones in step with the facts.

One function, :func:`milestones_refresh`, recomputes the milestone rows of the given
customers (or of everyone) from the raw tables in a few set-based statements, writes only
the rows that differ, and records stage changes; it keeps the customers' paid periods
(``PaidPeriod``, the cohort grid's revenue) in step the same way. The ``facts_changed``
receiver calls it for the customers a write touched; ``rebuild_funnel`` calls it for
everyone (:func:`milestones_rebuild`). Being the same SQL, a rebuild gives exactly what
incremental maintenance gave. Two shortcuts give the same rows for facts that can only
add: :func:`milestones_add_activities` folds new activities into the stored rows, and
:func:`milestones_add_customers` writes the first row of customers just created. Inside
the refresh, customers whose row needs nothing but the customer (no fact, stage 1,
nothing paid) are rewritten in one statement on PostgreSQL (``_refresh``).

Modules: ``_sql`` (the statements), ``_write`` (writing them, locks and settings),
``_refresh`` / ``_rebuild`` (the full refresh, of some customers or of everyone),
``_delta`` (the shortcuts).

Definitions (the product's contract, also in the README):

* acquisition: ``Customer.acquired_at``;
* activation: the first activity of an activation kind (``FUNNEL_ACTIVATION_KINDS``);
* retention: the first engagement activity (any kind but ``FUNNEL_SYSTEM_KINDS``) at least
  ``FUNNEL_RETENTION_DAYS`` days after acquisition;
* revenue / repurchase: ``paid_at`` of the first / second paid order (by ``paid_at``, then
  id); refunded orders never count;
* referral: the acquisition time of the first customer referred by this one.
"""

from funnel.services._delta import milestones_add_activities, milestones_add_customers
from funnel.services._refresh import milestones_rebuild, milestones_refresh
from funnel.services._sql import MONTH_DAYS, PERIODS, WEEK_DAYS
from funnel.services._write import RefreshResult, paid_periods_refresh_everyone

__all__ = [
    "MONTH_DAYS",
    "PERIODS",
    "WEEK_DAYS",
    "RefreshResult",
    "milestones_add_activities",
    "milestones_add_customers",
    "milestones_rebuild",
    "milestones_refresh",
    "paid_periods_refresh_everyone",
]
