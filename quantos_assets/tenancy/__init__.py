"""What each team may do: the teams file (deploy/teams.yaml). A library, not part of the
gateway: the gateway, the Kafka submission sensor, the CLI and a python_task step all read it."""
