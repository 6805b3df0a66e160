"""What a step looks like as a Kubernetes pod in the production profile (k8s_job_executor)."""
