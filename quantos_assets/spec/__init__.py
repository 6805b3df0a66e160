"""The DAG spec contract between the strategy compiler and the orchestrator."""
