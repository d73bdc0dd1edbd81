"""A local, WeCom-compatible server for the demo, the tests and the sync benchmark.

Nothing in this project talks to the real WeCom. ``Simulator`` serves the customer-contact
API (WECOM.md §1, same paths, shapes and error codes) for a corp generated from a seed,
exposes a control plane (expire tokens, inject errors, mutate data) and emits encrypted
callbacks (WECOM.md §2). Modules: ``data`` (deterministic generation), ``state``
(mutable overlays), ``api*`` (the cgi-bin handlers), ``server`` (HTTP), ``emitter``
(callbacks), ``control`` (the Simulator object and ``/__sim__/`` routes).
"""

from channels.wecom.simulator.control import CONTROL_ROUTES, Simulator
from channels.wecom.simulator.data import Dataset, DataSpec
from channels.wecom.simulator.emitter import (
    CallbackEmitter,
    change_external_chat_xml,
    change_external_contact_xml,
    change_external_tag_xml,
)

__all__ = [
    "CONTROL_ROUTES",
    "CallbackEmitter",
    "DataSpec",
    "Dataset",
    "Simulator",
    "change_external_chat_xml",
    "change_external_contact_xml",
    "change_external_tag_xml",
]
