"""Tools that prove a migration between engines kept behaviour (ledger, diff, crash, replay)."""
