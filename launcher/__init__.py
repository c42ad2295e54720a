"""Run launchers of the local (one-machine) Dagster instance: launcher.run_launcher.ForkServerRunLauncher
(configured in dagster_home/dagster.yaml) and the fork server it starts, launcher.fork_server. Nothing
is imported here, so that ``python -m launcher.fork_server`` runs its module once."""
