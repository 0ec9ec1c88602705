"""Mass texting (SPEC §4): campaigns, their audiences and the runner that feeds the outbox."""
