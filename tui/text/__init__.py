"""Untrusted text for the screen: shown literally, control characters made visible."""
