"""Mobile-specific reads, one module per area (who sees what stays in the apps' selectors)."""
