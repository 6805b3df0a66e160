"""Our run launchers and their run worker: the embedded default's (run workers started before
their runs, warm_pool) and staging/prod's (dagster-k8s's, its run pod running our run worker)."""
