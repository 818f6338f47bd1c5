"""A module with a workflow and no activity, for a worker that would consume none of Beluga's queues."""

from beluga import workflow


@workflow.defn()
def wf_no_activities(ctx, x):
    return x
