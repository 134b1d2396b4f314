"""Finished (model, seed) runs of a benchmark kept on disk as they finish, so that a killed benchmark
leaves its results so far and a rerun with ``resume`` does only what is left."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from pathlib import Path

import numpy as np

from recvae.benchmark.config import BenchmarkConfig, ModelSpec
from recvae.benchmark.runner import ModelRun
from recvae.errors import DataError
from recvae.io import file_stem, write_atomic_bytes, write_atomic_json
from recvae.tune.space import every_setting

log = logging.getLogger(__name__)


class RunStore:
    """``<folder>/runs/``: the benchmark's config, and one .json + .npz pair per finished run."""

    def __init__(self, folder: str | Path, config: BenchmarkConfig):
        self.root = Path(folder) / "runs"
        self.config = config
        self.restarted: set[str] = set()  # entries whose settings changed since their runs: run (and searched) again
        self.extended: set[str] = set()  # entries whose studies a larger search budget continues: run again

    def _stem(self, name: str, seed: int) -> Path:
        return self.root / f"{file_stem(name)}_seed{seed}"  # "_s" is in no stem: one file per (name, seed)

    def start(self, resume: bool) -> dict[tuple[str, int], ModelRun]:
        """The runs finished earlier (with ``resume``; none otherwise), after checking they belong to this config:
        an entry whose settings changed since its runs is listed in ``restarted`` and its runs are not returned
        (a run is kept under its entry's name, which alone would keep the old settings' figures). Without
        ``resume`` nothing is written here: the folder appears with the first finished run."""
        identity = self.root / "benchmark.json"
        if resume and identity.exists():
            recorded = json.loads(identity.read_text())
            search = self.config.to_json().get("search")
            grown = _budget_grew(recorded.get("search"), search)
            current, self.restarted = self._changed_entries(
                {**recorded, "search": search} if grown else recorded,
                "rerun without {resume=True} (and with {overwrite=True}) to start over")
            if self.restarted:
                log.warning("%s: entries changed since their runs, run again: %s", identity,
                            ", ".join(sorted(self.restarted)))
            runs = self._run_records()
            if grown:
                self.extended = self._cut_short(recorded.get("models", []), runs) - self.restarted
                log.warning("%s: the search budget grew (%s); studies it continues, their entries run again: %s",
                            identity, _budget_words(recorded["search"], current["search"]),
                            ", ".join(sorted(self.extended)) or "none")
            # the file as it is now, with the entries it no longer lists, so a later resume compares with both
            now = {m["name"] for m in current["models"]}
            write_atomic_json(identity, {**current, "models": [*current["models"],
                                                               *(m for m in recorded.get("models", []) if m["name"] not in now)]})
            # gone, or a second resume would take them for the new entry's
            finished, _ = self._runs_except(self.restarted | self.extended, delete=True, runs=runs)
            return finished
        for stale in self.root.glob("*"):
            stale.unlink()
        return {}

    def read(self) -> dict[tuple[str, int], ModelRun]:
        """The finished runs of this config's entries as they are now, leaving the folder untouched (another
        process's runs, to merge): runs of an entry whose settings changed since are left out (and counted)."""
        identity = self.root / "benchmark.json"
        if not identity.exists():
            raise DataError(f"{self.root}: no finished runs of a benchmark there (no benchmark.json)")
        _, changed = self._changed_entries(json.loads(identity.read_text()), "merge only folders of this benchmark")
        runs, stale = self._runs_except(changed, delete=False, runs=self._run_records())
        if stale:
            log.warning("%s: %d runs of entries changed since (%s) left out", self.root, stale, ", ".join(sorted(changed)))
        return runs

    def _changed_entries(self, recorded: dict, advice: str) -> tuple[dict, set[str]]:
        """This config as JSON, and the entries whose settings differ from ``recorded`` (this folder's
        benchmark.json); a recorded config of another benchmark is refused."""
        identity = self.root / "benchmark.json"
        current = json.loads(json.dumps(self.config.to_json(), default=str))
        table = recorded.get("data", {}).get("user_features")
        if (_comparable(recorded) != _comparable(current)
                or table not in (None, current.get("data", {}).get("user_features"))):
            raise DataError(f"{identity}: the finished runs there are of another benchmark config; {advice}")
        before = {m["name"]: m for m in recorded.get("models", [])}
        now = {m["name"]: m for m in current.get("models", [])}
        return current, {name for name in before.keys() & now.keys() if before[name] != now[name]}

    def _cut_short(self, recorded: list[dict], runs: list[tuple[Path, dict]]) -> set[str]:
        """The entries whose study (a run's tuning lists its trials, each with a state) ended before this config's
        budget of trials and still has seconds left under its time limit: under the larger budget their studies go
        on and may choose otherwise (a study whose trials took all the seconds would run none, so its entry keeps
        its runs). An entry this run leaves out (``--models``; its settings as ``recorded``) is counted too, so
        that its old figures do not stand under the new budget."""
        specs = {m["name"]: ModelSpec(**m) for m in recorded}
        specs.update({spec.name: spec for spec in self.config.models})
        trials, timeout = self.config.search.trials, self.config.search.timeout
        cut = set()
        for _, fields in runs:
            tuning, spec = fields["tuning"], specs.get(fields["name"])
            budget = trials if spec is None else every_setting(spec.space(), trials) or trials
            # the study's own count (tune.study._seconds_left): the seconds of its finished trials
            spent = sum(trial.get("seconds") or 0.0 for trial in tuning)
            if tuning and "state" in tuning[0] and len(tuning) < budget and (timeout is None or spent < timeout):
                cut.add(fields["name"])
        return cut

    def _run_records(self) -> list[tuple[Path, dict]]:
        """Each finished run's .json and its fields (the arrays stay on disk)."""
        return [(path, json.loads(path.read_text())) for path in sorted(self.root.glob("*.json"))
                if path.name != "benchmark.json"]

    def _runs_except(self, names: set[str], delete: bool, runs: list[tuple[Path, dict]]
                     ) -> tuple[dict[tuple[str, int], ModelRun], int]:
        """The finished runs (``_run_records``' list) of every entry but ``names``, and how many of theirs were passed
        over (deleted with ``delete``). The arrays are loaded only for the runs kept."""
        kept, passed = {}, 0
        for path, fields in runs:
            if fields["name"] not in names:
                kept[(fields["name"], fields["seed"])] = self._load(path, fields)
                continue
            passed += 1
            if delete:
                path.unlink()  # first: a run counts while its .json is there
                path.with_suffix(".npz").unlink(missing_ok=True)
        return kept, passed

    def add(self, run: ModelRun) -> None:
        if not (self.root / "benchmark.json").exists():
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic_json(self.root / "benchmark.json", self.config.to_json())
        stem = self._stem(run.name, run.seed)
        arrays = {"users": run.users, **{f"per_user.{k}": v for k, v in run.per_user.items()},
                  **{f"curves.{k}": v for k, v in run.curves.items()}}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic_bytes(stem.with_suffix(".npz"), buffer.getvalue())
        fields = {f.name: getattr(run, f.name) for f in dataclasses.fields(run)
                  if f.name not in ("users", "per_user", "curves")}
        write_atomic_json(stem.with_suffix(".json"), fields)  # last: a run counts once both files are whole

    def _load(self, path: Path, fields: dict) -> ModelRun:
        with np.load(path.with_suffix(".npz")) as arrays:
            per_user = {k.split(".", 1)[1]: arrays[k] for k in arrays.files if k.startswith("per_user.")}
            curves = {k.split(".", 1)[1]: arrays[k] for k in arrays.files if k.startswith("curves.")}
            users = arrays["users"]
        return ModelRun(**fields, users=users, per_user=per_user, curves=curves)


def _budget_grew(recorded: dict | None, current: dict | None) -> bool:
    """Whether a search differs from the recorded one only by more trials or seconds (or no time limit): a
    resume may continue its studies (the studies' databases allow it) instead of refusing the folder."""
    if not recorded or not current or recorded == current:
        return False
    rest = {k: v for k, v in current.items() if k not in ("trials", "timeout")}
    if rest != {k: v for k, v in recorded.items() if k not in ("trials", "timeout")}:
        return False
    old, new = recorded.get("timeout"), current.get("timeout")
    return current["trials"] >= recorded["trials"] and (new is None or (old is not None and new >= old))


def _budget_words(recorded: dict, current: dict) -> str:
    def words(search):
        return f"{search['trials']} trials or " + ("no time limit" if search.get("timeout") is None else
                                                   f"{search['timeout']:g} s")
    return f"{words(recorded)} → {words(current)}"


def _comparable(config: dict) -> dict:
    """The config less what a resumed run may change: the models to run and the seeds (more of them is fine),
    and the users' side table, which only the CVAE entries read: one named for the first time changes no
    finished run (``start`` refuses a table that replaces another)."""
    kept = {k: v for k, v in config.items() if k not in ("models", "seeds", "description")}
    if "data" in kept:
        kept["data"] = {k: v for k, v in kept["data"].items() if k != "user_features"}
    return kept
