"""The platform's own tables (SQLite locally, PostgreSQL in production): submissions with
their per-team quota window, and scheduled jobs with their fire times. The gateway writes
them; the Kafka and scheduled-job sensors and the run-usage check read and write them too,
so they are a library here rather than part of the gateway application."""
