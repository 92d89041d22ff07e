"""Vendored view functions and CSS: pure functions from values to markup, owned by the app."""
