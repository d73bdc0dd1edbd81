"""Mobile-specific reads (one module per area); the rules of who sees what stay in the apps' selectors."""
