"""AARRR funnel tables (milestones, stage history) are built in the funnel issue."""
