"""The engine's slots: small parts that know nothing of environments or files."""
