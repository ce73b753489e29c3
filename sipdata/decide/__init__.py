"""Pure routing decisions: no I/O, frozen inputs in, frozen answers out."""
