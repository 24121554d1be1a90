"""The data pipeline: sources, cleaning, deduplication, filters, tokenize-and-pack, loaders."""
