"""--log tensorboard and --log wandb (issue 29): the loggers hold exactly the rows of the CSVs and the resolved
config, a run writes the same CSVs with and without one, mistakes are one line, a resumed seed logs each row once,
and a failing logger never stops training."""

import csv
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from qbench import cli
from qbench.jobs import build_job
from qbench.loggers import hyperparameters
from qbench.store import RunDir
from qbench.training.rundir import run_batch

TINY = ["train", "dqn", "CartPole-v1", "--steps", "600", "--set", "hidden_sizes=[8]",
        "--set", "eval_interval_env_steps=200", "--set", "eval_episodes=2", "--set", "warmup_env_steps=100",
        "--set", "log_interval_env_steps=100"]
TINY_SETTINGS = {"total_env_steps": 600, "hidden_sizes": [8], "eval_interval_env_steps": 200, "eval_episodes": 2,
                 "warmup_env_steps": 100, "log_interval_env_steps": 100, "checkpoint_interval_env_steps": 300}
TIMING = {"wall_s", "steps_per_s"}   # wall-clock columns: the only ones two identical runs may differ in
CSVS = {"evaluation": "evaluations.csv", "diagnostics": "diagnostics.csv"}


def train(*args) -> None:
    assert cli.main([*TINY, *map(str, args)]) == 0


def csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        header, *rows = list(csv.reader(fh))
    return header, rows


def expected_scalars(run_dir: Path, kind: str) -> dict[str, list[tuple[int, float]]]:
    """What the loggers should hold for one CSV: per column, (env_steps, value) of its cells that are not NaN."""
    header, rows = csv_rows(run_dir / CSVS[kind])
    out: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        cells = dict(zip(header, row, strict=True))
        for column, cell in cells.items():
            if column != "env_steps" and cell != "" and not math.isnan(float(cell)):
                out.setdefault(f"{kind}/{column}", []).append((int(cells["env_steps"]), float(cell)))
    return out


def event_accumulator(run_dir: Path):
    from tensorboard.backend.event_processing import event_accumulator as ea

    # purge_orphaned_data off: the reader must see every event the files hold, duplicates included
    acc = ea.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0},
                              purge_orphaned_data=False)
    acc.Reload()
    return acc


def assert_tensorboard_holds_the_csvs(run_dir: Path) -> None:
    acc = event_accumulator(run_dir)
    expected = {**expected_scalars(run_dir, "evaluation"), **expected_scalars(run_dir, "diagnostics")}
    assert "evaluation/return_mean" in expected and "diagnostics/td_loss" in expected
    assert set(acc.Tags()["scalars"]) == set(expected)
    for tag, points in expected.items():
        logged = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert [step for step, _ in logged] == [step for step, _ in points], tag
        assert np.array_equal(np.float32([v for _, v in logged]), np.float32([v for _, v in points])), tag


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory):
    pytest.importorskip("tensorboard")
    out = tmp_path_factory.mktemp("one") / "run"
    train("--log", "tensorboard", "--out", out)
    return out


def test_tensorboard_holds_exactly_the_csv_rows_and_the_resolved_config(one_seed):
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    assert_tensorboard_holds_the_csvs(one_seed)
    config = json.loads((one_seed / "config.json").read_text())
    acc = event_accumulator(one_seed)
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    logged = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert set(logged) == set(hyperparameters(config)) and "lr" in logged and "variant" in logged
    assert logged["lr"].number_value == config["config"]["lr"]
    assert logged["variant"].string_value == "dqn" and logged["hidden_sizes"].string_value == "[8]"
    text = tensor_util.make_ndarray(acc.Tensors("config/text_summary")[0].tensor_proto).item().decode()
    assert json.loads(text) == config   # the text summary: config.json's JSON (as a code block)


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    pytest.importorskip("tensorboard")
    top = tmp_path_factory.mktemp("two")
    train("--seeds", "0-1", "--log", "tensorboard", "--out", top / "logged")
    train("--seeds", "0-1", "--out", top / "plain")
    return top


@pytest.mark.parametrize("seed", [0, 1])
def test_a_seed_batch_writes_the_same_csvs_with_and_without_a_logger(two_seeds, seed):
    logged, plain = two_seeds / "logged" / f"seed{seed}", two_seeds / "plain" / f"seed{seed}"
    for name in CSVS.values():
        (header, rows), (header_plain, rows_plain) = csv_rows(logged / name), csv_rows(plain / name)
        assert header == header_plain
        keep = [i for i, column in enumerate(header) if column not in TIMING]
        assert [[row[i] for i in keep] for row in rows] == [[row[i] for i in keep] for row in rows_plain], name
        assert len(rows) >= 3
    assert not (plain / "tensorboard").exists()
    assert_tensorboard_holds_the_csvs(logged)   # each seed its own TensorBoard run, in its run directory


@pytest.mark.parametrize("command", [
    [*TINY, "--out", "{tmp}/run"],
    [*TINY, "--seeds", "0-1", "--out", "{tmp}/run"],
    ["run", "smoke", "--results", "{tmp}/run"],
    ["sanity", "--results", "{tmp}/run"],
])
def test_an_unknown_logger_is_one_line_exit_2_naming_the_valid_ones(command, tmp_path, capsys):
    code = cli.main([a.format(tmp=tmp_path) for a in command] + ["--log", "nonsense"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "unknown logger 'nonsense'" in err and "valid loggers: tensorboard, wandb" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
@pytest.mark.parametrize("command", [[*TINY, "--out", "{tmp}/run"], ["run", "smoke", "--results", "{tmp}/run"]])
def test_a_missing_logger_package_is_one_line_naming_the_extra_to_install(logger, command, tmp_path, monkeypatch,
                                                                           capsys):
    monkeypatch.setitem(sys.modules, logger, None)   # import tensorboard / import wandb now raises ImportError
    code = cli.main([a.format(tmp=tmp_path) for a in command] + ["--log", f"tensorboard,{logger}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"pip install 'qbench[{logger}]'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


class Interrupt(Exception):
    pass


def interrupt_at_first_checkpoint(env_steps, info):
    if "checkpoint" in info:
        raise Interrupt(env_steps)


@pytest.mark.parametrize("first_attempt_logged", [True, False])
def test_a_resumed_seed_logs_each_row_once(first_attempt_logged, tmp_path):
    """The first attempt stops at its checkpoint (300 env steps); the resumed one replays the checkpoint's rows:
    the event files then hold every CSV row exactly once, whether or not the first attempt had the logger."""
    pytest.importorskip("tensorboard")
    job = build_job("dqn", "CartPole-v1", 0, TINY_SETTINGS)
    run = RunDir(tmp_path / "run")
    with pytest.raises(Interrupt):
        run_batch([job], [run], progress=interrupt_at_first_checkpoint,
                  log=("tensorboard",) if first_attempt_logged else ())
    run_batch([job], [run], log=("tensorboard",))
    assert json.loads((run.path / "metadata.json").read_text())["resumed"], "it did not resume"
    assert_tensorboard_holds_the_csvs(run.path)
    assert len(list((run.path / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_a_failing_logger_is_said_in_one_line_and_training_and_its_csvs_go_on(two_seeds, tmp_path, monkeypatch,
                                                                              capsys):
    from qbench.loggers import TensorBoardLogger

    def full_disk(self, kind, env_steps, row):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(TensorBoardLogger, "log_row", full_disk)
    job = build_job("dqn", "CartPole-v1", 0, {key: v for key, v in TINY_SETTINGS.items()
                                              if key != "checkpoint_interval_env_steps"})
    summary = run_batch([job], [RunDir(tmp_path / "run")], log=("tensorboard",))[0]
    assert summary["env_steps"] == 600
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and "the tensorboard logger of seed 0 failed at env step 100" in warnings[0]
    assert "training and its CSVs go on" in warnings[0]
    header, rows = csv_rows(tmp_path / "run" / "evaluations.csv")
    _, rows_plain = csv_rows(two_seeds / "plain" / "seed0" / "evaluations.csv")   # the same job, no logger
    keep = [i for i, column in enumerate(header) if column not in TIMING]
    assert [[r[i] for i in keep] for r in rows] == [[r[i] for i in keep] for r in rows_plain]


def test_qbench_run_streams_each_job_to_tensorboard_from_its_worker(tmp_path):
    pytest.importorskip("tensorboard")
    results = tmp_path / "results"
    assert cli.main(["run", "smoke", "--results", str(results), "--only", "task=CartPole-v1", "--only",
                     "variant=dqn", "--only", "seed=0", "--workers", "1", "--log", "tensorboard"]) == 0
    (run_dir,) = {p.parent for p in results.rglob("summary.json")}
    assert_tensorboard_holds_the_csvs(run_dir)


def wandb_records(path: Path):
    """The protobuf records of a W&B run file (run-<id>.wandb): a 7-byte header (':W&B', ident, version), then
    LevelDB log blocks of 32 KiB, each record a 7-byte header (crc32, length, type) and its data, split across
    blocks as FIRST/MIDDLE/LAST pieces."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    pos, pieces = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:   # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pieces = chunk if kind in (1, 2) else pieces + chunk
        if kind in (1, 4):   # FULL, LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            yield record


def key_of(item) -> str:
    """A W&B record item's key: in ``key``, or in ``nested_key`` (as W&B writes the history's)."""
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_run_holds_the_rows_and_the_resolved_config(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)   # offline, as without WANDB_MODE
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):   # nothing outside tmp_path
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    out = tmp_path / "run"
    train("--log", "wandb", "--out", out)
    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    records = list(wandb_records(run_file))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.display_name == "dqn/CartPole-v1/seed0" and run.project == "qbench"
    config = {key_of(item): json.loads(item.value_json) for item in run.config.update
              if not key_of(item).startswith("_")}
    assert config == hyperparameters(json.loads((out / "config.json").read_text()))
    history: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            for item in r.history.item:
                if not key_of(item).startswith("_"):
                    history.setdefault(key_of(item), []).append((r.history.step.num, json.loads(item.value_json)))
    expected = {**expected_scalars(out, "evaluation"), **expected_scalars(out, "diagnostics")}
    assert set(history) == set(expected)
    for key, points in expected.items():   # W&B keeps float64: the CSV's 17 significant digits come back
        assert [(s, pytest.approx(v, rel=1e-15)) for s, v in points] == history[key], key
