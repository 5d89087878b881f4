"""TaskFlow form: a mapped ``@task.mooncat`` whose key comes from the mapped value."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from airflow.sdk import dag, get_current_context, task


@dag(schedule=None, start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), catchup=False)
def mc_mapped() -> None:
    @task
    def names() -> list[str]:
        return list(get_current_context()["dag_run"].conf["names"])

    @task.mooncat(namespace="{{ dag_run.conf['ns'] }}", key="item/{name}")
    def shout(name: str, marker: str) -> str:
        with Path(marker).open("a", encoding="utf-8") as fh:
            fh.write(f"{name}\n")
        return f"{name.upper()}!"

    shout.partial(marker="{{ dag_run.conf['marker'] }}").expand(name=names())


mc_mapped()


@dag(schedule=None, start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), catchup=False)
def mc_by_position() -> None:
    """A key built from the map index alone: works, but warns that reordering would mix results."""

    @task.mooncat(namespace="{{ dag_run.conf['ns'] }}", key="slot/{{ ti.map_index }}")
    def double(n: int) -> int:
        return n * 2

    double.expand(n=[1, 2])


mc_by_position()
