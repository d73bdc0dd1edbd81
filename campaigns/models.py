"""Campaign, content and SOP tables are built in the SOP issue."""
