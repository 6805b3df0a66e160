"""Model trainers a ray_job node names in params.trainer (see `registry`)."""
