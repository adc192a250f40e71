"""Atomic writes give files the mode an ordinary open() would: 0o666 less the umask (not mkstemp's 0o600)."""

import os
import stat

import pytest

from qbench import store
from qbench.store import RunDir, atomic_write_bytes, atomic_write_json, atomic_write_text


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o027, 0o640)])
def test_atomic_writes_honour_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_write_text(tmp_path / "report.html", "<html></html>")
    atomic_write_json(tmp_path / "b.json", {"a": 1})
    RunDir(tmp_path / "run").write_summary({"final_return_mean": 1.0})
    for name in ("a.bin", "report.html", "b.json", "run/summary.json"):
        assert _mode(tmp_path / name) == mode, name
    with open(tmp_path / "plain.txt", "w") as fh:   # what an ordinary open() gives, for comparison
        fh.write("x")
    assert _mode(tmp_path / "plain.txt") == mode


def test_overwriting_keeps_the_umask_mode_and_leaves_no_temporaries(tmp_path, umask):
    umask(0o022)
    atomic_write_text(tmp_path / "f.txt", "old")
    atomic_write_text(tmp_path / "f.txt", "new")
    assert (tmp_path / "f.txt").read_text() == "new" and _mode(tmp_path / "f.txt") == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_the_umask_is_read_without_proc_too(tmp_path, umask, monkeypatch):
    """Where /proc/self/status cannot be read, the umask is set and restored at once; it is left unchanged."""
    umask(0o027)
    real_open = open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise OSError("no /proc here")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_proc)
    assert store.current_umask() == 0o027
    atomic_write_text(tmp_path / "f.txt", "x")
    monkeypatch.undo()
    assert _mode(tmp_path / "f.txt") == 0o640
    assert os.umask(0o027) == 0o027   # the fallback restored it


def test_git_commit_is_unknown_for_a_copy_inside_another_repository(tmp_path):
    """qbench installed as a plain copy in a venv inside a user's git repository: the user's commit is not
    qbench's."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import qbench
    project = tmp_path / "proj"
    site = project / ".venv" / "site-packages"
    shutil.copytree(Path(qbench.__file__).parent, site / "qbench", ignore=shutil.ignore_patterns("__pycache__"))
    for command in (["init", "-q"], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty",
                                     "-m", "user's"]):
        subprocess.run(["git", *command], cwd=project, check=True, capture_output=True)
    program = "import sys; sys.path.insert(0, sys.argv[1]); from qbench.store import git_commit; print(git_commit())"
    out = subprocess.run([sys.executable, "-c", program, str(site)],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
    assert out == "unknown"
