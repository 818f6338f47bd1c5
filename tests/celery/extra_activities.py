"""An activity only some workers load (BELUGA_IMPORTS), to test runs that wait for a capable worker."""

from beluga import workflow


@workflow.activity(name="fleet_not_everywhere")
def not_everywhere(x: str) -> str:
    return f"done {x}"
