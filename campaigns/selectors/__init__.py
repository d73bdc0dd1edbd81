"""Non-trivial reads of the campaigns app, one module per concern (import from the module):
``audience`` (who an SOP version targets), ``touchpoints`` (the log, staff to-dos),
``preview`` (the dry run), ``reports`` (campaign results and lift)."""
