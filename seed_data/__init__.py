"""The demo region: `generate.py` writes the committed JSON, `loader.py` loads it."""
