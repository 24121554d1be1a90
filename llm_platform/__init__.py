"""llm-platform."""
