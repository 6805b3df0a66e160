"""Admission: one policy for every path that creates or changes runs or registered specs.

The gateway (submit, retry), scheduled jobs (schedule, edit, each firing), Kafka submissions
and the CLI's registry writes all ask `admit()` before they store or launch anything. The
policy is a short ordered list of small rule objects (`policy.POLICY`, after Prefect's
orchestration rules); the first rule that refuses decides, with a code and one line.
"""
