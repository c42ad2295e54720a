import dagster as dg

# One partition per row of `jobs` (key = job id), added by the pending-jobs sensor.
video_jobs_partitions = dg.DynamicPartitionsDefinition(name="video_jobs")
