"""Checkpoints and resuming: what a run keeps on disk so that a restart continues exactly.

A run's train state and its log so far (records, step, wall time) are saved together with orbax
every ``checkpoint_every`` steps; a finished run's log is written last, atomically, to
``workdir/runs/<run>.json``, which marks it complete. ``workdir/config.json`` holds the config's
fingerprint, so a workdir is never resumed by a different config (the results would mix).

Example:
  >>> import tempfile
  >>> directory = Path(tempfile.mkdtemp())
  >>> write_atomic(directory / "a.json", "{}")
  >>> (directory / "a.json").read_text()
  '{}'
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from jadam.experiments.config_check import ConfigError


def new_log() -> dict:
    """The log of a run that has not trained yet."""
    return {"records": [], "wall_time_s": 0.0, "diverged": False, "step": 0}


def save(manager: ocp.CheckpointManager, step: int, state: Any, log: dict) -> None:
    """Saves the train state and the run's log so far (blocking, so a crash right after is safe)."""
    manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), log=ocp.args.JsonSave(log)),
        force=True,
    )
    manager.wait_until_finished()


def restore(manager: ocp.CheckpointManager, state: Any) -> tuple[Any, dict] | None:
    """(state, log) of the latest checkpoint, shaped like ``state``; ``None`` when there is none."""
    step = manager.latest_step()
    if step is None:
        return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), log=ocp.args.JsonRestore()
        ),
    )
    return restored.state, dict(restored.log)


def resume(workdir: Path, run_id: str, state: Any) -> tuple[ocp.CheckpointManager, Any, dict]:
    """(manager, state, log) to continue run ``run_id`` from: its finished log, else the latest
    checkpoint, else ``state`` and a new log."""
    manager = ocp.CheckpointManager(
        (workdir / "checkpoints" / run_id).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
    )
    done = _finished_path(workdir, run_id)
    if done.exists():
        return manager, state, json.loads(done.read_text())
    restored = restore(manager, state)
    if restored is not None:
        return manager, *restored
    return manager, state, new_log()


def mark_finished(workdir: Path, run_id: str, log: dict) -> None:
    """Writes the finished run's log, once and atomically: the run is then complete."""
    done = _finished_path(workdir, run_id)
    if not done.exists():
        done.parent.mkdir(exist_ok=True)
        write_atomic(done, json.dumps(log))


def finished_records(workdir: Path, run_id: str) -> list[dict]:
    """The records of a finished run."""
    return json.loads(_finished_path(workdir, run_id).read_text())["records"]


def _finished_path(workdir: Path, run_id: str) -> Path:
    return workdir / "runs" / f"{run_id}.json"


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to a temporary file and renames it: a kill leaves the old or new file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def config_fingerprint(config: ml_collections.ConfigDict) -> str:
    """16 hex digits of the SHA-256 of the config's sorted JSON."""
    return hashlib.sha256(config.to_json(sort_keys=True).encode()).hexdigest()[:16]


def check_workdir(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """Refuses to resume in a workdir written by a different config (the results would mix)."""
    workdir.mkdir(parents=True, exist_ok=True)
    stamp = workdir / "config.json"
    fingerprint = config_fingerprint(config)
    if stamp.exists():
        previous = json.loads(stamp.read_text()).get("fingerprint")
        if previous != fingerprint:
            raise ConfigError(
                f"workdir {str(workdir)!r} holds results of a different config "
                f"(fingerprint {previous}, "
                f"this config {fingerprint}); use a new --workdir or delete the old one"
            )
    else:
        record = {"fingerprint": fingerprint, "config": json.loads(config.to_json())}
        write_atomic(stamp, json.dumps(record, indent=1))
