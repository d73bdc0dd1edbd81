"""Every write of the campaigns app, one module per concern (import from the module):

* ``content``: the content library and per-customer rendering of variables;
* ``sops``: SOP definitions, versions, activation;
* ``schedule``: when a step is due (corp time zone, quiet hours);
* ``enrollment``: triggers, audience, enrolment (touchpoint rows), exit conditions;
* ``dispatch``: claiming due touchpoints, quota, WeCom message tasks, reconciliation;
* ``confirm``: WeCom's confirmations and send results, staff to-dos;
* ``campaigns``: campaigns, holdout membership;
* ``levers``: coupons and member points.
"""
