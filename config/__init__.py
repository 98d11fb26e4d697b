"""The default and example configuration shipped with inbox-daemon (copied by operators)."""
