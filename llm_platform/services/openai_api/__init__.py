"""The OpenAI-compatible inference server: request models, the engine's async front, routes, limits and filters.

`llm_platform.services.openai_server` assembles them into one FastAPI app and runs it under uvicorn.
"""
