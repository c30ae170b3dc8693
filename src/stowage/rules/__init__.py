"""Pure rules with no I/O that several layers apply (settings validation, services, housekeeping)."""
