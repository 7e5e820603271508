"""Tools that train and evaluate the bundled models (never imported by the library)."""
