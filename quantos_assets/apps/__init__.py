"""The applications built on the platform's library: the `quantos` CLI (`cli`), the REST
submission gateway (`gateway`), the Python client (`client`) and the run launchers
(`launcher`: the embedded default's, and staging/prod's for Kubernetes). Everything else in
`quantos_assets` is the library. The library never imports an application, nor do `sensors`
and `definitions`: CI checks it (the layers and forbidden contracts of `[tool.importlinter]`
in pyproject.toml, run by `lint-imports`)."""
