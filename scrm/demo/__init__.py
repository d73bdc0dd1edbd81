"""The demo data set: a cosmetics chain with five stores, 25 staff and ~2,000 customers.

Two halves, so that the data is deterministic and the writes stay honest:

* :func:`demo_plan` is pure: from a seed and an anchor time it lays out every store,
  staff member, channel, tag, customer, follow, order, activity and note. The same seed
  and anchor give the same plan, byte for byte.
* :func:`demo_seed` writes a plan through the services (``customers.services`` and
  ``scrm.services``), never the models, so the demo goes through the same doors as real
  data and the funnel's subscribers see every fact. Every write is an upsert keyed by a
  ``demo-`` key, so seeding twice leaves the same rows.

The module lives in ``scrm`` rather than ``customers`` because it spans apps (channels,
and later funnel and campaigns), and ``customers`` must import none of them.

The anchor ("now" of the demo) is fixed the first time the demo is seeded (it is the
creation time of the first demo store) so that a second run a week later rewrites
nothing; delete the database to get fresh dates.
"""

from scrm.demo.plan import (
    API_CLIENT_USERNAME,
    DEFAULT_CUSTOMERS,
    DEFAULT_SEED,
    DEMO_PASSWORD,
    HISTORY_DAYS,
    STORES,
    demo_code_channels,
    demo_plan,
    demo_wecom_userids,
)
from scrm.demo.seed import DemoReport, demo_anchor, demo_counts, demo_login_hint, demo_seed

__all__ = [
    "API_CLIENT_USERNAME",
    "DEFAULT_CUSTOMERS",
    "DEFAULT_SEED",
    "DEMO_PASSWORD",
    "HISTORY_DAYS",
    "STORES",
    "DemoReport",
    "demo_anchor",
    "demo_code_channels",
    "demo_counts",
    "demo_login_hint",
    "demo_plan",
    "demo_seed",
    "demo_wecom_userids",
]
