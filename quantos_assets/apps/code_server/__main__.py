"""`python -m quantos_assets.apps.code_server [dagster api grpc options]`."""

import sys

from quantos_assets.apps.code_server.in_place import main

sys.exit(main(sys.argv[1:]))
