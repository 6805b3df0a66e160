"""The REST submission gateway: FastAPI app, tokens, team policy, submission store."""
