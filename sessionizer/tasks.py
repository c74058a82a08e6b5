"""Task names: the contract between the API, which sends tasks by name, and the workers."""

PLAN = "sessionizer.plan"  # (job_id): split a queued job into units and send them
UNIT = "sessionizer.unit"  # (job_id, unit index, [user]): sessionize one unit
