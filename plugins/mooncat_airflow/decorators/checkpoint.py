"""``@task.mooncat``: the TaskFlow form of :class:`~mooncat_airflow.operators.checkpoint.CheckpointOperator`."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink
from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory

from mooncat_airflow.operators.checkpoint import CheckpointOperator

if TYPE_CHECKING:
    from airflow.sdk.bases.decorator import TaskDecorator


class _CheckpointDecoratedOperator(DecoratedOperator, CheckpointOperator):
    """Runs the decorated function under a checkpoint; ``key`` sees the function's own arguments."""

    template_fields: Sequence[str] = CheckpointOperator.template_fields
    template_fields_renderers: ClassVar[dict[str, str]] = {"op_args": "py", "op_kwargs": "py"}
    custom_operator_name = "@task.mooncat"
    # The plugin supplies the "Checkpoint" link from the rendered fields (see CheckpointLink).
    operator_extra_links: Collection[BaseOperatorLink] = ()

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None,
        op_kwargs: Mapping[str, Any] | None,
        **kwargs: Any,
    ) -> None:
        # DecoratedOperator keeps the callable and arguments for itself unless told to pass them on.
        kwargs_to_upstream = {"python_callable": python_callable, "op_args": op_args, "op_kwargs": op_kwargs}
        super().__init__(
            kwargs_to_upstream=kwargs_to_upstream,
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            **kwargs,
        )


def mooncat_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> TaskDecorator:
    """
    Wrap a function into a checkpointed task: ``@task.mooncat(namespace="ns", key="item/{name}")``.

    ``key`` is a template over the function's arguments (Jinja over the task context works too), or a
    callable receiving the bound arguments. For mapped tasks build it from the mapped value, never from
    the map index, so a reordered input keeps each result with its own item. All other arguments are
    those of :class:`~mooncat_airflow.operators.checkpoint.CheckpointOperator` and ``BaseOperator``.
    """
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=_CheckpointDecoratedOperator,
        **kwargs,
    )
