"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

# Airflow compares this to the installing distribution's name and refuses the provider on a mismatch.
PACKAGE_NAME = "mooncat-checkpoint"


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow uses to register hooks, decorators, links and the UI."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Mooncat Checkpoint",
        "description": (
            "Per-key claim/done/fail checkpoints shared with Prefect flows and TypeScript jobs, "
            "so reruns, backfills and cleared runs skip work that is already finished."
        ),
        "integrations": [
            {
                "integration-name": "Mooncat Checkpoint",
                "external-doc-url": "https://pypi.org/project/mooncat-checkpoint/",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "Mooncat Checkpoint",
                "python-modules": ["mooncat_airflow.operators.checkpoint"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Mooncat Checkpoint",
                "python-modules": ["mooncat_airflow.sensors.checkpoint"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Mooncat Checkpoint",
                "python-modules": ["mooncat_airflow.hooks.checkpoint"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Mooncat Checkpoint",
                "python-modules": ["mooncat_airflow.triggers.checkpoint"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "mooncat_airflow.hooks.checkpoint.CheckpointHook",
                "hook-name": "Mooncat Checkpoint",
                "connection-type": "mooncat",
                # The store is addressed by one URL, so the generic host/login/... fields would only
                # confuse; the two fields that matter live in ``extra``.
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "port", "login", "password"],
                    "relabeling": {},
                    "placeholders": {
                        "extra": '{"url": "sqlite:///data/checkpoints.db", "namespace": "my-pipeline"}',
                    },
                },
                "conn-fields": {
                    "url": {
                        "label": "Store URL",
                        "description": (
                            "memory://, file://<path>, sqlite://<path> or postgresql://... "
                            "Empty: MOONCAT_CHECKPOINT_URL, then mooncat-checkpoint.config.json, "
                            "then file://./.mooncat/checkpoints."
                        ),
                        "schema": {"type": ["string", "null"]},
                    },
                    "durability": {
                        "label": "Durability",
                        "description": "full (default): every write synced to disk; fast: fewer syncs.",
                        "schema": {"type": ["string", "null"], "enum": ["full", "fast", None]},
                    },
                    "namespace": {
                        "label": "Default namespace",
                        "description": "Used by tasks that do not name a namespace themselves.",
                        "schema": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9_-]*$"},
                    },
                },
            }
        ],
        "extra-links": ["mooncat_airflow.links.checkpoint.CheckpointLink"],
        "task-decorators": [
            {"class-name": "mooncat_airflow.decorators.checkpoint.mooncat_task", "name": "mooncat"},
        ],
        "plugins": [
            {"name": "mooncat_checkpoint", "plugin-class": "mooncat_airflow.plugins.ui.MooncatCheckpointPlugin"},
        ],
    }
