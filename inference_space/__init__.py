"""The inference Space: a FastAPI app serving one LABEL's classifier at a pinned model revision."""
