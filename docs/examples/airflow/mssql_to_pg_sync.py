"""The data engineer's guide's hourly sync, as an Airflow DAG.

`incremental_sync` runs `mssql-pg-migrate run` on the first try and
`resume` on a retry, so an interrupted sync continues where it stopped
instead of starting over. The config decides the mode; with
`target_mode: upsert` and `change_columns`, each hourly run reads only
what changed since the last one (the marks are kept in the target
database, so a state file per run, as here, is fine). The task's XCom is
the run's JSON document (`--output-json` prints it as the last line of
stdout; `--progress` lines come before it). `validate_sync` then checks
the copy.

Settings come from the environment, so the same file serves a laptop, a
test harness and a cluster:

  MSSQL_PG_MIGRATE_BIN     the binary (default: mssql-pg-migrate on PATH)
  MSSQL_PG_MIGRATE_CONFIG  the config file (default: /opt/airflow/config/migration.yaml)
  MSSQL_PG_MIGRATE_STATE   the folder for state files (default: /tmp)
  MSSQL_PG_MIGRATE_RETRY_DELAY  seconds before a retry (default: 300, the guide's 5 minutes)

`cargo xtask airflow-it` runs this DAG with `airflow dags test` against
throwaway PostgreSQL clusters and checks the XCom and the copied data.
"""

import os
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

BINARY = os.environ.get("MSSQL_PG_MIGRATE_BIN", "mssql-pg-migrate")
CONFIG = os.environ.get("MSSQL_PG_MIGRATE_CONFIG", "/opt/airflow/config/migration.yaml")
STATE_DIR = os.environ.get("MSSQL_PG_MIGRATE_STATE", "/tmp")

default_args = {
    "retries": 3,
    "retry_delay": timedelta(seconds=int(os.environ.get("MSSQL_PG_MIGRATE_RETRY_DELAY", "300"))),
}

with DAG(
    "mssql_to_pg_sync",
    default_args=default_args,
    schedule="@hourly",
    start_date=datetime(2025, 1, 1),
    catchup=False,
) as dag:
    migrate = BashOperator(
        task_id="incremental_sync",
        # Exit codes (see the guide): 1 config, 2 connection (retry), 3
        # transfer, 5 cancelled, 6 state. A retry resumes the same run.
        bash_command=(
            f'"{BINARY}" -c "{CONFIG}" '
            f'--state-file "{STATE_DIR}/{{{{ run_id | replace(":", "_") }}}}.state" '
            "--output-json --progress "
            "{{ 'resume' if task_instance.try_number > 1 else 'run' }}"
        ),
        do_xcom_push=True,
    )

    validate = BashOperator(
        task_id="validate_sync",
        bash_command=f'"{BINARY}" -c "{CONFIG}" --output-json validate',
    )

    migrate >> validate
